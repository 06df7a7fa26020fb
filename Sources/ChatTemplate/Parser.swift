/// Expression tree. Each node keeps where it starts, for error messages.
final class Expr: Sendable {
    indirect enum Kind {
        case literal(TemplateValue)
        case name(String)
        case list([Expr])
        case tuple([Expr])
        case dict([(Expr, Expr)])
        case attribute(Expr, String)
        case `subscript`(Expr, Expr)
        case slice(Expr, Expr?, Expr?, Expr?)
        case call(Expr, [Expr], [(String, Expr)])
        case filter(Expr, String, [Expr], [(String, Expr)])
        case test(Expr, String, [Expr], negated: Bool)
        case not(Expr)
        case negate(Expr)
        case and(Expr, Expr)
        case or(Expr, Expr)
        case binary(String, Expr, Expr)
        case compare(Expr, [(String, Expr)])
        case conditional(Expr, Expr, Expr?)
    }
    let kind: Kind
    let location: SourceLocation
    init(_ kind: Kind, _ location: SourceLocation) {
        self.kind = kind
        self.location = location
    }
}

/// Statement tree.
indirect enum Node: Sendable {
    enum SetTarget {
        case names([String])
        case attribute(String, String)
    }
    case text(String)
    case output(Expr)
    case conditional([(Expr, [Node])], otherwise: [Node])
    case loop(targets: [String], iterable: Expr, filter: Expr?, body: [Node], otherwise: [Node], SourceLocation)
    case assign(SetTarget, Expr, SourceLocation)
    case assignBlock(String, [Node])
    case macro(name: String, parameters: [(String, Expr?)], body: [Node])
    case filterBlock(String, [Expr], [(String, Expr)], [Node], SourceLocation)
    case breakLoop
    case continueLoop
}

/// Recursive-descent parser for the Jinja subset chat templates use (docs/generation.md).
struct Parser {
    private var segments: [Lexer.Segment]
    private var position = 0
    private let end: SourceLocation

    /// Nesting depth of blocks (`if`, `for`, `macro` …) in ``parseBlock(until:)``.
    private var depth = 0

    /// Limits that keep a hostile template (a model file) from overflowing the stack: blocks
    /// nested deeper than this, and tags of more tokens (an expression's nesting, and so the
    /// interpreter's recursion, is bounded by its token count). Real templates stay far below.
    static let maxDepth = 64
    static let maxTagTokens = 512

    init(source: String) throws {
        let lexer = Lexer(source)
        segments = try lexer.segments()
        end = lexer.location(lexer.s.count)
        for case let .output(tokens, loc) in segments where tokens.count > Self.maxTagTokens {
            throw TemplateError.syntax("a tag of \(tokens.count) tokens (at most \(Self.maxTagTokens))", loc)
        }
        for case let .statement(tokens, loc) in segments where tokens.count > Self.maxTagTokens {
            throw TemplateError.syntax("a tag of \(tokens.count) tokens (at most \(Self.maxTagTokens))", loc)
        }
    }

    mutating func parseTemplate() throws -> [Node] {
        let (nodes, terminator) = try parseBlock(until: [])
        if let (name, loc) = terminator { throw TemplateError.syntax("unexpected `{% \(name) %}`", loc) }
        return nodes
    }

    /// Parses nodes until a statement whose first word is in `terminators`; returns that
    /// statement's tokens (the terminator is consumed).
    private mutating func parseBlock(until terminators: Set<String>) throws -> ([Node], (String, SourceLocation)?) {
        depth += 1
        defer { depth -= 1 }
        guard depth <= Self.maxDepth else { throw TemplateError.syntax("blocks nested more than \(Self.maxDepth) deep", end) }
        var nodes: [Node] = []
        while position < segments.count {
            let segment = segments[position]
            position += 1
            switch segment {
            case let .text(t):
                nodes.append(.text(t))
            case let .output(tokens, loc):
                var p = ExpressionParser(tokens: tokens, start: loc)
                let e = try p.parseTuple()
                try p.expectEnd()
                nodes.append(.output(e))
            case let .statement(tokens, loc):
                guard case let .name(keyword)? = tokens.first?.kind else { throw TemplateError.syntax("expected a statement name after `{%`", loc) }
                if terminators.contains(keyword) {
                    position -= 1
                    return (nodes, (keyword, loc))
                }
                if let node = try parseStatement(keyword, tokens, loc) { nodes.append(node) }
            }
        }
        return (nodes, nil)
    }

    private mutating func statementTokens() -> ([Lexer.Token], SourceLocation) {
        guard case let .statement(tokens, loc) = segments[position] else { fatalError("parseBlock stops only at statements") }
        position += 1
        return (tokens, loc)
    }

    private mutating func expectEnd(_ name: String, opened: SourceLocation, terminators: Set<String>) throws -> ([Node], String, [Lexer.Token], SourceLocation) {
        let (body, terminator) = try parseBlock(until: terminators)
        guard let (word, _) = terminator else {
            throw TemplateError.syntax("`{% \(name) %}` is never closed (expected \(terminators.sorted().map { "{% \($0) %}" }.joined(separator: " or ")))", opened)
        }
        let (tokens, loc) = statementTokens()
        return (body, word, tokens, loc)
    }

    private mutating func parseStatement(_ keyword: String, _ tokens: [Lexer.Token], _ loc: SourceLocation) throws -> Node? {
        var p = ExpressionParser(tokens: tokens, start: loc)
        p.index = 1
        switch keyword {
        case "if":
            var branches: [(Expr, [Node])] = []
            var condition = try p.parseExpression()
            try p.expectEnd()
            var otherwise: [Node] = []
            while true {
                let (body, word, tokens, wordLoc) = try expectEnd("if", opened: loc, terminators: ["elif", "else", "endif"])
                branches.append((condition, body))
                if word == "elif" {
                    var q = ExpressionParser(tokens: tokens, start: wordLoc)
                    q.index = 1
                    condition = try q.parseExpression()
                    try q.expectEnd()
                    continue
                }
                if word == "else" {
                    let (body, _, _, _) = try expectEnd("if", opened: loc, terminators: ["endif"])
                    otherwise = body
                }
                break
            }
            return .conditional(branches, otherwise: otherwise)
        case "for":
            var targets: [String] = []
            let parenthesized = p.skip(op: "(")
            repeat { targets.append(try p.expectName()) } while p.skip(op: ",")
            if parenthesized { try p.expect(op: ")") }
            try p.expectKeyword("in")
            let iterable = try p.parseTuple(withConditional: false)
            var filter: Expr?
            if p.skipKeyword("if") { filter = try p.parseExpression() }
            if p.skipKeyword("recursive") { throw TemplateError.syntax("recursive loops are not supported", loc) }
            try p.expectEnd()
            let (body, word, _, _) = try expectEnd("for", opened: loc, terminators: ["else", "endfor"])
            var otherwise: [Node] = []
            if word == "else" { otherwise = try expectEnd("for", opened: loc, terminators: ["endfor"]).0 }
            return .loop(targets: targets, iterable: iterable, filter: filter, body: body, otherwise: otherwise, loc)
        case "set":
            let first = try p.expectName()
            if p.skip(op: ".") {
                let attribute = try p.expectName()
                try p.expect(op: "=")
                let value = try p.parseTuple()
                try p.expectEnd()
                return .assign(.attribute(first, attribute), value, loc)
            }
            var names = [first]
            while p.skip(op: ",") { names.append(try p.expectName()) }
            if p.atEnd {
                guard names.count == 1 else { throw TemplateError.syntax("a `{% set %}` block assigns one name", loc) }
                let (body, _, _, _) = try expectEnd("set", opened: loc, terminators: ["endset"])
                return .assignBlock(first, body)
            }
            try p.expect(op: "=")
            let value = try p.parseTuple()
            try p.expectEnd()
            return .assign(.names(names), value, loc)
        case "macro":
            let name = try p.expectName()
            try p.expect(op: "(")
            var parameters: [(String, Expr?)] = []
            if !p.skip(op: ")") {
                repeat {
                    let param = try p.expectName()
                    parameters.append((param, p.skip(op: "=") ? try p.parseExpression() : nil))
                } while p.skip(op: ",")
                try p.expect(op: ")")
            }
            try p.expectEnd()
            let (body, _, _, _) = try expectEnd("macro", opened: loc, terminators: ["endmacro"])
            return .macro(name: name, parameters: parameters, body: body)
        case "filter":
            let name = try p.expectName()
            var args: [Expr] = [], kwargs: [(String, Expr)] = []
            if p.skip(op: "(") { (args, kwargs) = try p.parseArguments() }
            try p.expectEnd()
            let (body, _, _, _) = try expectEnd("filter", opened: loc, terminators: ["endfilter"])
            return .filterBlock(name, args, kwargs, body, loc)
        case "generation":
            // transformers' assistant-mask marker: renders its body unchanged.
            try p.expectEnd()
            let (body, _, _, _) = try expectEnd("generation", opened: loc, terminators: ["endgeneration"])
            return .conditional([(Expr(.literal(.bool(true)), loc), body)], otherwise: [])
        case "raw":
            let (body, _, _, _) = try expectEnd("raw", opened: loc, terminators: ["endraw"])
            return .conditional([(Expr(.literal(.bool(true)), loc), body)], otherwise: [])
        case "break":
            try p.expectEnd()
            return .breakLoop
        case "continue":
            try p.expectEnd()
            return .continueLoop
        default:
            throw TemplateError.syntax("unsupported statement `{% \(keyword) %}`", loc)
        }
    }
}

/// Parses one tag's tokens as an expression with Jinja's precedence:
/// conditional < or < and < not < comparisons/in < + - < ~ < * / // % < ** < unary < filters/tests < postfix.
struct ExpressionParser {
    let tokens: [Lexer.Token]
    let start: SourceLocation
    var index = 0

    init(tokens: [Lexer.Token], start: SourceLocation) {
        self.tokens = tokens
        self.start = start
    }

    var atEnd: Bool { index >= tokens.count }
    var location: SourceLocation { index < tokens.count ? tokens[index].location : (tokens.last?.location ?? start) }
    var peek: Lexer.TokenKind? { index < tokens.count ? tokens[index].kind : nil }

    func error(_ message: String) -> TemplateError { .syntax(message, location) }

    mutating func expectEnd() throws {
        if !atEnd { throw error("unexpected \(describe(tokens[index].kind)) (expected the end of the tag)") }
    }

    func describe(_ k: Lexer.TokenKind) -> String {
        switch k {
        case let .name(n): return "`\(n)`"
        case let .string(s): return "string \(TemplateValue.pyQuote(s))"
        case let .int(i): return "number \(i)"
        case let .double(d): return "number \(d)"
        case let .op(o): return "`\(o)`"
        }
    }

    mutating func skip(op: String) -> Bool {
        if peek == .op(op) { index += 1; return true }
        return false
    }

    mutating func skipKeyword(_ word: String) -> Bool {
        if peek == .name(word) { index += 1; return true }
        return false
    }

    mutating func expect(op: String) throws {
        guard skip(op: op) else { throw error(atEnd ? "expected `\(op)` before the end of the tag" : "expected `\(op)`, found \(describe(peek!))") }
    }

    mutating func expectKeyword(_ word: String) throws {
        guard skipKeyword(word) else { throw error(atEnd ? "expected `\(word)`" : "expected `\(word)`, found \(describe(peek!))") }
    }

    mutating func expectName() throws -> String {
        guard case let .name(n)? = peek else { throw error(atEnd ? "expected a name" : "expected a name, found \(describe(peek!))") }
        index += 1
        return n
    }

    /// `a, b` as a tuple (as in `{{ a, b }}` or `{% set x = 1, 2 %}`), or a single expression.
    mutating func parseTuple(withConditional: Bool = true) throws -> Expr {
        let loc = location
        let first = withConditional ? try parseExpression() : try parseOr()
        guard peek == .op(",") else { return first }
        var items = [first]
        while skip(op: ",") {
            if atEnd || peek == .op(")") || peek == .name("if") { break }
            items.append(withConditional ? try parseExpression() : try parseOr())
        }
        return Expr(.tuple(items), loc)
    }

    mutating func parseExpression() throws -> Expr {
        let loc = location
        let value = try parseOr()
        if skipKeyword("if") {
            let condition = try parseOr()
            let otherwise = skipKeyword("else") ? try parseExpression() : nil
            return Expr(.conditional(value, condition, otherwise), loc)
        }
        return value
    }

    mutating func parseOr() throws -> Expr {
        var left = try parseAnd()
        while peek == .name("or") {
            let loc = location
            index += 1
            left = Expr(.or(left, try parseAnd()), loc)
        }
        return left
    }

    mutating func parseAnd() throws -> Expr {
        var left = try parseNot()
        while peek == .name("and") {
            let loc = location
            index += 1
            left = Expr(.and(left, try parseNot()), loc)
        }
        return left
    }

    mutating func parseNot() throws -> Expr {
        if peek == .name("not") {
            let loc = location
            index += 1
            return Expr(.not(try parseNot()), loc)
        }
        return try parseCompare()
    }

    mutating func parseCompare() throws -> Expr {
        let loc = location
        let left = try parseMath1()
        var rest: [(String, Expr)] = []
        while true {
            if case let .op(o)? = peek, ["==", "!=", "<", ">", "<=", ">="].contains(o) {
                index += 1
                rest.append((o, try parseMath1()))
            } else if peek == .name("in") {
                index += 1
                rest.append(("in", try parseMath1()))
            } else if peek == .name("not"), index + 1 < tokens.count, tokens[index + 1].kind == .name("in") {
                index += 2
                rest.append(("not in", try parseMath1()))
            } else {
                break
            }
        }
        return rest.isEmpty ? left : Expr(.compare(left, rest), loc)
    }

    mutating func parseMath1() throws -> Expr {
        var left = try parseConcat()
        while case let .op(o)? = peek, o == "+" || o == "-" {
            let loc = location
            index += 1
            left = Expr(.binary(o, left, try parseConcat()), loc)
        }
        return left
    }

    mutating func parseConcat() throws -> Expr {
        var left = try parseMath2()
        while peek == .op("~") {
            let loc = location
            index += 1
            left = Expr(.binary("~", left, try parseMath2()), loc)
        }
        return left
    }

    mutating func parseMath2() throws -> Expr {
        var left = try parsePow()
        while case let .op(o)? = peek, ["*", "/", "//", "%"].contains(o) {
            let loc = location
            index += 1
            left = Expr(.binary(o, left, try parsePow()), loc)
        }
        return left
    }

    mutating func parsePow() throws -> Expr {
        var left = try parseUnary()
        while peek == .op("**") {
            let loc = location
            index += 1
            left = Expr(.binary("**", left, try parseUnary()), loc)
        }
        return left
    }

    mutating func parseUnary(withFilter: Bool = true) throws -> Expr {
        let loc = location
        var node: Expr
        if skip(op: "-") {
            node = Expr(.negate(try parseUnary(withFilter: false)), loc)
        } else if skip(op: "+") {
            node = try parseUnary(withFilter: false)
        } else {
            node = try parsePrimary()
        }
        node = try parsePostfix(node)
        if withFilter { node = try parseFilterAndTests(node) }
        return node
    }

    mutating func parsePrimary() throws -> Expr {
        let loc = location
        guard let token = peek else { throw error("expected an expression before the end of the tag") }
        index += 1
        switch token {
        case let .name(n):
            switch n {
            case "true", "True": return Expr(.literal(.bool(true)), loc)
            case "false", "False": return Expr(.literal(.bool(false)), loc)
            case "none", "None": return Expr(.literal(.none), loc)
            default: return Expr(.name(n), loc)
            }
        case var .string(s):
            while case let .string(more)? = peek { s += more; index += 1 }  // adjacent literals concatenate
            return Expr(.literal(.string(s)), loc)
        case let .int(i): return Expr(.literal(.int(i)), loc)
        case let .double(d): return Expr(.literal(.double(d)), loc)
        case .op("("):
            if skip(op: ")") { return Expr(.tuple([]), loc) }
            let inner = try parseTuple()
            try expect(op: ")")
            return inner
        case .op("["):
            var items: [Expr] = []
            while !skip(op: "]") {
                if !items.isEmpty { try expect(op: ","); if skip(op: "]") { break } }
                items.append(try parseExpression())
            }
            return Expr(.list(items), loc)
        case .op("{"):
            var pairs: [(Expr, Expr)] = []
            while !skip(op: "}") {
                if !pairs.isEmpty { try expect(op: ","); if skip(op: "}") { break } }
                let key = try parseExpression()
                try expect(op: ":")
                pairs.append((key, try parseExpression()))
            }
            return Expr(.dict(pairs), loc)
        default:
            index -= 1
            throw error("unexpected \(describe(token))")
        }
    }

    mutating func parsePostfix(_ base: Expr) throws -> Expr {
        var node = base
        while true {
            let loc = location
            if skip(op: ".") {
                if case let .int(i)? = peek {  // foo.0
                    index += 1
                    node = Expr(.subscript(node, Expr(.literal(.int(i)), loc)), node.location)
                } else {
                    node = Expr(.attribute(node, try expectName()), node.location)
                }
            } else if skip(op: "[") {
                var parts: [Expr?] = [nil]
                var isSlice = false
                while !skip(op: "]") {
                    if skip(op: ":") {
                        isSlice = true
                        parts.append(nil)
                    } else {
                        guard parts[parts.count - 1] == nil else { throw error("expected `]`") }
                        parts[parts.count - 1] = try parseExpression()
                    }
                }
                if isSlice {
                    guard parts.count <= 3 else { throw TemplateError.syntax("a slice has at most three parts", loc) }
                    while parts.count < 3 { parts.append(nil) }
                    node = Expr(.slice(node, parts[0], parts[1], parts[2]), loc)
                } else {
                    guard let key = parts[0] else { throw TemplateError.syntax("empty subscript", loc) }
                    node = Expr(.subscript(node, key), loc)
                }
            } else if skip(op: "(") {
                let (args, kwargs) = try parseArguments()
                node = Expr(.call(node, args, kwargs), node.location)
            } else {
                return node
            }
        }
    }

    /// Arguments after `(` up to and including `)`.
    mutating func parseArguments() throws -> ([Expr], [(String, Expr)]) {
        var args: [Expr] = [], kwargs: [(String, Expr)] = []
        while !skip(op: ")") {
            if !(args.isEmpty && kwargs.isEmpty) { try expect(op: ","); if skip(op: ")") { break } }
            if case let .name(n)? = peek, index + 1 < tokens.count, tokens[index + 1].kind == .op("=") {
                index += 2
                kwargs.append((n, try parseExpression()))
            } else {
                if !kwargs.isEmpty { throw error("positional argument after keyword argument") }
                args.append(try parseExpression())
            }
        }
        return (args, kwargs)
    }

    mutating func parseFilterAndTests(_ base: Expr) throws -> Expr {
        var node = base
        while true {
            let loc = location
            if skip(op: "|") {
                var name = try expectName()
                while skip(op: ".") { name += "." + (try expectName()) }
                var args: [Expr] = [], kwargs: [(String, Expr)] = []
                if skip(op: "(") { (args, kwargs) = try parseArguments() }
                node = Expr(.filter(node, name, args, kwargs), loc)
            } else if skipKeyword("is") {
                let negated = skipKeyword("not")
                let name: String
                if case let .name(n)? = peek { name = n; index += 1 }
                else if case let .op(o)? = peek, ["==", "!=", "<", ">", "<=", ">="].contains(o) { name = o; index += 1 }
                else { throw error("expected a test name after `is`") }
                var args: [Expr] = []
                if skip(op: "(") {
                    args = try parseArguments().0
                } else if let k = peek, startsArgument(k) {
                    args = [try parsePostfix(try parsePrimary())]
                }
                node = Expr(.test(node, name == "none" || name == "None" ? "none" : name, args, negated: negated), loc)
            } else if skip(op: "(") {
                let (args, kwargs) = try parseArguments()
                node = Expr(.call(node, args, kwargs), loc)
            } else {
                return node
            }
        }
    }

    /// Whether a token after `is name` starts a bare test argument (`is divisibleby 3`).
    private func startsArgument(_ k: Lexer.TokenKind) -> Bool {
        switch k {
        case .string, .int, .double: return true
        case let .name(n): return !["else", "or", "and", "if", "in", "not", "is"].contains(n)
        case .op("["), .op("{"): return true
        default: return false
        }
    }
}
