import Foundation

/// Operators, filters, tests and methods with Python/Jinja semantics.
enum Builtins {
    typealias V = TemplateValue

    // MARK: - Access

    static func attribute(_ v: V, _ name: String) throws -> V {
        switch v {
        case let .object(o):
            if let x = o[name] { return x }
            return method(v, name) ?? .undefined
        case let .namespace(ns):
            return ns[name] ?? .undefined
        default:
            return method(v, name) ?? .undefined
        }
    }

    static func item(_ v: V, _ key: V) throws -> V {
        switch (v, key) {
        case let (.object(o), _):
            if let x = o[key.pyStr] { return x }
            if case let .string(s) = key { return method(v, s) ?? .undefined }
            return .undefined
        case let (.namespace(ns), .string(s)):
            return ns[s] ?? .undefined
        case let (.array(a), _):
            guard let i = key.integer else { return .undefined }
            let j = i < 0 ? a.count + i : i
            return a.indices.contains(j) ? a[j] : .undefined
        case let (.string(s), _):
            guard let i = key.integer else {
                if case let .string(name) = key { return method(v, name) ?? .undefined }
                return .undefined
            }
            let scalars = Array(s.unicodeScalars)
            let j = i < 0 ? scalars.count + i : i
            return scalars.indices.contains(j) ? .string(String(scalars[j])) : .undefined
        default:
            if case let .string(name) = key { return method(v, name) ?? .undefined }
            return .undefined
        }
    }

    static func slice(_ v: V, _ start: Int?, _ stop: Int?, _ step: Int?) throws -> V {
        let step = step ?? 1
        guard step != 0 else { throw TemplateValueError("slice step cannot be zero") }
        func indices(_ n: Int) -> [Int] {
            func clamp(_ x: Int?, _ defaultValue: Int, low: Int, high: Int) -> Int {
                guard var x else { return defaultValue }
                if x < 0 { x += n }
                return min(max(x, low), high)
            }
            if step > 0 {
                let a = clamp(start, 0, low: 0, high: n), b = clamp(stop, n, low: 0, high: n)
                return a < b ? Array(stride(from: a, to: b, by: step)) : []
            } else {
                let a = clamp(start, n - 1, low: -1, high: n - 1), b = clamp(stop, -1, low: -1, high: n - 1)
                return a > b ? Array(stride(from: a, to: b, by: step)) : []
            }
        }
        switch v {
        case let .array(a): return .array(indices(a.count).map { a[$0] })
        case let .string(s):
            let scalars = Array(s.unicodeScalars)
            var out = ""
            for i in indices(scalars.count) { out.unicodeScalars.append(scalars[i]) }
            return .string(out)
        case .undefined: return .array([])
        default: throw TemplateValueError("'\(v.typeName)' object is not subscriptable")
        }
    }

    static func iterate(_ v: V) throws -> [V] {
        switch v {
        case let .array(a): return a
        case let .object(o): return o.keys.map { .string($0) }
        case let .string(s): return s.unicodeScalars.map { .string(String($0)) }
        case .undefined: return []
        default: throw TemplateValueError("'\(v.typeName)' object is not iterable")
        }
    }

    static func length(_ v: V) throws -> Int {
        switch v {
        case let .array(a): return a.count
        case let .object(o): return o.count
        case let .string(s): return s.unicodeScalars.count
        case .undefined: return 0
        default: throw TemplateValueError("object of type '\(v.typeName)' has no len()")
        }
    }

    // MARK: - Operators

    /// The largest string or list `*` builds (a template from a model file must not make a
    /// chat allocate gigabytes).
    static let maxRepeatedSize = 1 << 20

    /// `count` checked so that `count` copies of `size` units stay under ``maxRepeatedSize``.
    static func repetitions(_ count: Int, of size: Int) throws -> Int {
        let n = max(0, count)
        guard n <= maxRepeatedSize / max(size, 1) else {
            throw TemplateValueError("repetition too large (\(n) × \(size); at most \(maxRepeatedSize))")
        }
        return n
    }

    /// A double as Python's int() would give it, clamped to Int's range (NaN gives 0).
    static func clampedInt(_ d: Double) -> Int {
        guard !d.isNaN else { return 0 }
        return d >= 0x1p63 ? Int.max : d <= -0x1p63 ? Int.min : Int(d)
    }

    static func binary(_ op: String, _ a: V, _ b: V) throws -> V {
        if op == "~" { return .string(a.pyStr + b.pyStr) }
        if a.isUndefined || b.isUndefined {
            throw TemplateValueError("unsupported operand: undefined value in `\(op)`")
        }
        switch (op, a, b) {
        case let ("+", .string(x), .string(y)): return .string(x + y)
        case let ("+", .array(x), .array(y)): return .array(x + y)
        case let ("*", .string(x), _) where b.integer != nil:
            let n = try repetitions(b.integer ?? 0, of: x.utf8.count)
            return .string(String(repeating: x, count: n))
        case let ("*", .array(x), _) where b.integer != nil:
            let n = try repetitions(b.integer ?? 0, of: x.count)
            return .array(Array(repeating: x, count: n).flatMap { $0 })
        default: break
        }
        if let x = a.integer, let y = b.integer {
            switch op {
            case "+": return .int(x &+ y)
            case "-": return .int(x &- y)
            case "*": return .int(x &* y)
            case "/":
                guard y != 0 else { throw TemplateValueError("division by zero") }
                return .double(Double(x) / Double(y))
            case "//":
                guard y != 0 else { throw TemplateValueError("integer division or modulo by zero") }
                return .int(clampedInt((Double(x) / Double(y)).rounded(.down)))
            case "%":
                guard y != 0 else { throw TemplateValueError("integer division or modulo by zero") }
                let r = x.remainderReportingOverflow(dividingBy: y).partialValue  // Int.min % -1 is 0
                return .int(r != 0 && (r < 0) != (y < 0) ? r + y : r)
            case "**":
                if y >= 0 {
                    // By squaring (a template's `2 ** 10**18` must not loop 10^18 times); wraps like + and *.
                    var (r, base, e) = (1, x, y)
                    while e > 0 {
                        if e & 1 == 1 { r = r &* base }
                        base = base &* base
                        e >>= 1
                    }
                    return .int(r)
                }
                return .double(pow(Double(x), Double(y)))
            default: break
            }
        }
        if let x = a.number, let y = b.number {
            switch op {
            case "+": return .double(x + y)
            case "-": return .double(x - y)
            case "*": return .double(x * y)
            case "/":
                guard y != 0 else { throw TemplateValueError("float division by zero") }
                return .double(x / y)
            case "//":
                guard y != 0 else { throw TemplateValueError("float floor division by zero") }
                return .double((x / y).rounded(.down))
            case "%":
                guard y != 0 else { throw TemplateValueError("float modulo") }
                let r = x.truncatingRemainder(dividingBy: y)
                return .double(r != 0 && (r < 0) != (y < 0) ? r + y : r)
            case "**": return .double(pow(x, y))
            default: break
            }
        }
        throw TemplateValueError("unsupported operand type(s) for \(op): '\(a.typeName)' and '\(b.typeName)'")
    }

    static func compare(_ op: String, _ a: V, _ b: V) throws -> Bool {
        switch op {
        case "==": return a.pyEquals(b)
        case "!=": return !a.pyEquals(b)
        case "in": return try contains(b, a)
        case "not in": return try !contains(b, a)
        default: break
        }
        let order: Int
        if let x = a.number, let y = b.number {
            order = x < y ? -1 : x > y ? 1 : 0
        } else if case let .string(x) = a, case let .string(y) = b {
            let xs = Array(x.unicodeScalars.map(\.value)), ys = Array(y.unicodeScalars.map(\.value))
            order = xs.lexicographicallyPrecedes(ys) ? -1 : xs == ys ? 0 : 1
        } else {
            throw TemplateValueError("'\(op)' not supported between instances of '\(a.typeName)' and '\(b.typeName)'")
        }
        switch op {
        case "<": return order < 0
        case ">": return order > 0
        case "<=": return order <= 0
        default: return order >= 0
        }
    }

    static func contains(_ container: V, _ item: V) throws -> Bool {
        switch container {
        case let .string(s):
            guard case let .string(x) = item else { throw TemplateValueError("'in <string>' requires string as left operand, not \(item.typeName)") }
            return x.isEmpty || s.contains(x)
        case let .array(a): return a.contains { $0.pyEquals(item) }
        case let .object(o):
            if case let .string(key) = item { return o[key] != nil }
            return false
        case let .namespace(ns): return ns[item.pyStr] != nil
        case .undefined: return false
        default: throw TemplateValueError("argument of type '\(container.typeName)' is not iterable")
        }
    }

    // MARK: - Tests (`x is name`)

    static func test(_ name: String, _ v: V, _ args: [V], scope: Scope) throws -> Bool {
        func arg(_ i: Int) throws -> V {
            guard i < args.count else { throw TemplateValueError("test '\(name)' needs an argument") }
            return args[i]
        }
        switch name {
        case "defined": return !v.isUndefined
        case "undefined": return v.isUndefined
        case "none": if case .none = v { return true } else { return false }
        case "boolean": if case .bool = v { return true } else { return false }
        case "true": if case .bool(true) = v { return true } else { return false }
        case "false": if case .bool(false) = v { return true } else { return false }
        case "string": if case .string = v { return true } else { return false }
        case "number": return v.number != nil
        case "integer": if case .int = v { return true } else { return false }
        case "float": if case .double = v { return true } else { return false }
        case "mapping": if case .object = v { return true } else { return false }
        case "iterable", "sequence":
            switch v {
            case .array, .object, .string: return true
            default: return false
            }
        case "callable": if case .callable = v { return true } else { return false }
        case "odd": guard let i = v.integer else { throw TemplateValueError("test 'odd' needs an integer") }; return i % 2 != 0
        case "even": guard let i = v.integer else { throw TemplateValueError("test 'even' needs an integer") }; return i % 2 == 0
        case "divisibleby":
            guard let i = v.integer, let d = try arg(0).integer, d != 0 else { throw TemplateValueError("test 'divisibleby' needs integers") }
            return i % d == 0
        case "lower": if case let .string(s) = v { return s == s.lowercased() } else { return false }
        case "upper": if case let .string(s) = v { return s == s.uppercased() } else { return false }
        case "equalto", "eq", "==", "sameas": return v.pyEquals(try arg(0))
        case "ne", "!=": return !v.pyEquals(try arg(0))
        case "lt", "lessthan", "<": return try compare("<", v, try arg(0))
        case "le", "<=": return try compare("<=", v, try arg(0))
        case "gt", "greaterthan", ">": return try compare(">", v, try arg(0))
        case "ge", ">=": return try compare(">=", v, try arg(0))
        case "in": return try contains(try arg(0), v)
        case "filter": if case let .string(s) = v { return filterNames.contains(s) } else { return false }
        case "test": if case let .string(s) = v { return testNames.contains(s) } else { return false }
        default: throw TemplateValueError("no test named '\(name)'")
        }
    }

    static let testNames: Set<String> = ["defined", "undefined", "none", "boolean", "true", "false", "string", "number", "integer",
                                         "float", "mapping", "iterable", "sequence", "callable", "odd", "even", "divisibleby",
                                         "lower", "upper", "equalto", "eq", "sameas", "ne", "lt", "le", "gt", "ge", "in"]
    static let filterNames: Set<String> = ["abs", "capitalize", "count", "d", "default", "first", "float", "indent", "int", "items",
                                           "join", "last", "length", "list", "lower", "map", "max", "min", "reject", "rejectattr",
                                           "replace", "reverse", "round", "safe", "select", "selectattr", "sort", "string", "sum",
                                           "title", "tojson", "trim", "unique", "upper", "wordcount", "dictsort"]

    // MARK: - Filters

    static func filter(_ name: String, _ v: V, _ args: [V], _ kwargs: [(String, V)], scope: Scope) throws -> V {
        func param(_ i: Int, _ key: String) -> V? {
            if let k = kwargs.first(where: { $0.0 == key }) { return k.1 }
            return i < args.count ? args[i] : nil
        }
        func string(_ x: V, _ what: String) throws -> String {
            guard case let .string(s) = x else { throw TemplateValueError("filter '\(name)' expects \(what) to be a string, not \(x.typeName)") }
            return s
        }
        switch name {
        case "trim":
            if let chars = param(0, "chars"), case let .string(c) = chars { return .string(pyStrip(v.pyStr, Set(c.unicodeScalars), left: true, right: true)) }
            return .string(pyStrip(v.pyStr, nil, left: true, right: true))
        case "length", "count":
            return .int(try length(v))
        case "tojson":
            var indent: Int?
            if let i = param(0, "indent"), case let .int(n) = i { indent = n }
            return .string(try v.json(indent: indent))
        case "upper": return .string(v.pyStr.uppercased())
        case "lower": return .string(v.pyStr.lowercased())
        case "capitalize":
            let s = v.pyStr
            return .string(s.prefix(1).uppercased() + s.dropFirst().lowercased())
        case "title":
            var out = "", startOfWord = true
            for ch in v.pyStr {
                out += startOfWord ? ch.uppercased() : ch.lowercased()
                startOfWord = !(ch.isLetter || ch.isNumber)
            }
            return .string(out)
        case "default", "d":
            let fallback = param(0, "default_value") ?? .string("")
            let boolean = param(1, "boolean")?.truthy ?? false
            if v.isUndefined || (boolean && !v.truthy) { return fallback }
            return v
        case "first":
            let items = try iterate(v)
            return items.first ?? .undefined
        case "last":
            let items = try iterate(v)
            return items.last ?? .undefined
        case "join":
            var items = try iterate(v)
            if let attr = param(1, "attribute") { items = try items.map { try attribute($0, attr.pyStr) } }
            return .string(items.map(\.pyStr).joined(separator: param(0, "d")?.pyStr ?? ""))
        case "replace":
            let s = v.pyStr
            let old = try string(param(0, "old") ?? .undefined, "old")
            let new = try string(param(1, "new") ?? .undefined, "new")
            return .string(pyReplace(s, old, new, count: param(2, "count")?.integer))
        case "string":
            return .string(v.pyStr)
        case "safe":
            return v
        case "items":
            switch v {
            case let .object(o): return .array(o.pairs.map { .array([.string($0.0), $0.1]) })
            case .undefined: return .array([])
            default: throw TemplateValueError("filter 'items' expects a mapping, not \(v.typeName)")
            }
        case "dictsort":
            guard case let .object(o) = v else { throw TemplateValueError("filter 'dictsort' expects a mapping") }
            return .array(o.pairs.sorted { $0.0.lowercased() < $1.0.lowercased() }.map { .array([.string($0.0), $0.1]) })
        case "list":
            return .array(try iterate(v))
        case "reverse":
            if case let .string(s) = v { return .string(String(s.reversed())) }
            return .array(try iterate(v).reversed())
        case "unique":
            var seen: [V] = []
            for x in try iterate(v) where !seen.contains(where: { $0.pyEquals(x) }) { seen.append(x) }
            return .array(seen)
        case "sort":
            var items = try iterate(v)
            let reverse = param(0, "reverse")?.truthy ?? false
            let attr = param(2, "attribute")
            func key(_ x: V) throws -> V { try attr.map { try attribute(x, $0.pyStr) } ?? x }
            var failure: Error?
            items.sort { a, b in
                do { return try compare("<", try key(a), try key(b)) != reverse } catch { failure = error; return false }
            }
            if let failure { throw failure }
            return .array(items)
        case "selectattr", "rejectattr":
            guard let attr = param(0, "attribute") else { throw TemplateValueError("filter '\(name)' needs an attribute name") }
            let keep = name == "selectattr"
            return .array(try iterate(v).filter { item in
                let a = try attribute(item, attr.pyStr)
                let passed = args.count > 1 ? try test(args[1].pyStr, a, Array(args.dropFirst(2)), scope: scope) : a.truthy
                return passed == keep
            })
        case "select", "reject":
            let keep = name == "select"
            return .array(try iterate(v).filter { item in
                let passed = args.count > 0 ? try test(args[0].pyStr, item, Array(args.dropFirst(1)), scope: scope) : item.truthy
                return passed == keep
            })
        case "map":
            if let attr = kwargs.first(where: { $0.0 == "attribute" })?.1 {
                let fallback = kwargs.first(where: { $0.0 == "default" })?.1
                return .array(try iterate(v).map { item in
                    let x = try attribute(item, attr.pyStr)
                    return x.isUndefined ? (fallback ?? x) : x
                })
            }
            guard let f = args.first else { throw TemplateValueError("filter 'map' needs a filter name or attribute=") }
            return .array(try iterate(v).map { try filter(f.pyStr, $0, Array(args.dropFirst()), [], scope: scope) })
        case "int":
            switch v {
            case let .int(i): return .int(i)
            case let .bool(b): return .int(b ? 1 : 0)
            case let .double(d): return .int(clampedInt(d))
            case let .string(s): return .int(Int(s.trimmingCharacters(in: .whitespaces)) ?? clampedInt(Double(s) ?? 0))
            default: return param(0, "default") ?? .int(0)
            }
        case "float":
            if let d = v.number { return .double(d) }
            if case let .string(s) = v, let d = Double(s.trimmingCharacters(in: .whitespaces)) { return .double(d) }
            return param(0, "default") ?? .double(0)
        case "abs":
            switch v {
            case let .int(i): return .int(abs(i))
            case let .double(d): return .double(abs(d))
            default: throw TemplateValueError("bad operand type for abs(): '\(v.typeName)'")
            }
        case "round":
            guard let d = v.number else { throw TemplateValueError("filter 'round' expects a number") }
            let precision = param(0, "precision")?.integer ?? 0
            let scale = pow(10, Double(precision))
            return .double((d * scale).rounded(.toNearestOrEven) / scale)
        case "sum":
            var total: V = .int(0)
            for x in try iterate(v) { total = try binary("+", total, x) }
            return total
        case "min", "max":
            let items = try iterate(v)
            guard var best = items.first else { return .undefined }
            for x in items.dropFirst() where try compare(name == "min" ? "<" : ">", x, best) { best = x }
            return best
        case "indent":
            let width = param(0, "width")?.integer ?? 4
            let first = param(1, "first")?.truthy ?? false
            let blank = param(2, "blank")?.truthy ?? false
            let pad = String(repeating: " ", count: width)
            let lines = v.pyStr.components(separatedBy: "\n")
            let out = lines.enumerated().map { i, line in
                (i == 0 && !first) || (line.isEmpty && !blank) ? line : pad + line
            }
            return .string(out.joined(separator: "\n"))
        case "wordcount":
            return .int(v.pyStr.split(whereSeparator: { $0.isWhitespace }).count)
        default:
            throw TemplateValueError("no filter named '\(name)'")
        }
    }

    // MARK: - Methods (`"text".strip()`, `dict.items()`)

    static func method(_ v: V, _ name: String) -> V? {
        switch v {
        case let .string(s): return stringMethod(s, name)
        case let .object(o):
            switch name {
            case "items": return .callable(.init(name) { _, _ in .array(o.pairs.map { .array([.string($0.0), $0.1]) }) })
            case "keys": return .callable(.init(name) { _, _ in .array(o.keys.map { .string($0) }) })
            case "values": return .callable(.init(name) { _, _ in .array(o.pairs.map(\.1)) })
            case "get": return .callable(.init(name) { args, _ in
                guard let key = args.first else { throw TemplateValueError("get() needs a key") }
                return o[key.pyStr] ?? (args.count > 1 ? args[1] : .none)
            })
            default: return nil
            }
        case let .array(a):
            switch name {
            case "index": return .callable(.init(name) { args, _ in
                guard let x = args.first, let i = a.firstIndex(where: { $0.pyEquals(x) }) else { throw TemplateValueError("value is not in list") }
                return .int(i)
            })
            case "count": return .callable(.init(name) { args, _ in .int(a.filter { $0.pyEquals(args.first ?? .none) }.count) })
            default: return nil
            }
        default: return nil
        }
    }

    private static func stringMethod(_ s: String, _ name: String) -> V? {
        func chars(_ args: [V]) -> Set<Unicode.Scalar>? {
            if let a = args.first, case let .string(c) = a { return Set(c.unicodeScalars) }
            return nil
        }
        func prefixes(_ args: [V]) throws -> [String] {
            switch args.first {
            case let .string(p)?: return [p]
            case let .array(items)?: return items.map(\.pyStr)
            default: throw TemplateValueError("\(name)() needs a string argument")
            }
        }
        let f: ([V], [(String, V)]) throws -> V
        switch name {
        case "strip": f = { args, _ in .string(pyStrip(s, chars(args), left: true, right: true)) }
        case "lstrip": f = { args, _ in .string(pyStrip(s, chars(args), left: true, right: false)) }
        case "rstrip": f = { args, _ in .string(pyStrip(s, chars(args), left: false, right: true)) }
        case "upper": f = { _, _ in .string(s.uppercased()) }
        case "lower": f = { _, _ in .string(s.lowercased()) }
        case "title": f = { _, _ in try filter("title", .string(s), [], [], scope: Scope(parent: nil)) }
        case "capitalize": f = { _, _ in try filter("capitalize", .string(s), [], [], scope: Scope(parent: nil)) }
        case "startswith": f = { args, _ in .bool(try prefixes(args).contains { s.unicodeScalars.starts(with: $0.unicodeScalars) }) }
        case "endswith": f = { args, _ in .bool(try prefixes(args).contains { s.unicodeScalars.reversed().starts(with: $0.unicodeScalars.reversed()) }) }
        case "split", "rsplit":
            f = { args, kwargs in
                let sep = kwargs.first(where: { $0.0 == "sep" })?.1 ?? args.first ?? .none
                let maxsplit = (kwargs.first(where: { $0.0 == "maxsplit" })?.1 ?? (args.count > 1 ? args[1] : .int(-1))).integer ?? -1
                if case let .string(separator) = sep {
                    guard !separator.isEmpty else { throw TemplateValueError("empty separator") }
                    return .array(pySplit(s, separator, maxsplit: maxsplit, fromRight: name == "rsplit").map { .string($0) })
                }
                return .array(s.split(whereSeparator: { $0.isWhitespace }).map { .string(String($0)) })
            }
        case "replace": f = { args, _ in
            guard args.count >= 2 else { throw TemplateValueError("replace() takes at least 2 arguments") }
            return .string(pyReplace(s, args[0].pyStr, args[1].pyStr, count: args.count > 2 ? args[2].integer : nil))
        }
        case "find": f = { args, _ in
            guard let x = args.first?.pyStr else { throw TemplateValueError("find() takes an argument") }
            guard let r = s.range(of: x) else { return .int(-1) }
            return .int(s.unicodeScalars.distance(from: s.unicodeScalars.startIndex, to: r.lowerBound))
        }
        case "count": f = { args, _ in .int(max(0, pySplit(s, args.first?.pyStr ?? " ", maxsplit: -1, fromRight: false).count - 1)) }
        case "join": f = { args, _ in .string(try iterate(args.first ?? .array([])).map(\.pyStr).joined(separator: s)) }
        case "splitlines": f = { _, _ in .array(s.split(omittingEmptySubsequences: false, whereSeparator: { $0.isNewline }).map { .string(String($0)) }.dropLast(s.hasSuffix("\n") ? 1 : 0)) }
        case "isdigit": f = { _, _ in .bool(!s.isEmpty && s.allSatisfy { $0.isNumber }) }
        case "isspace": f = { _, _ in .bool(!s.isEmpty && s.allSatisfy { $0.isWhitespace }) }
        default: return nil
        }
        return .callable(.init(name, f))
    }

    /// Python's `str.strip()` whitespace: Unicode White_Space plus the separators U+001C..U+001F.
    static func isPyWhitespace(_ u: Unicode.Scalar) -> Bool {
        u.properties.isWhitespace || (0x1C...0x1F).contains(u.value)
    }

    static func pyStrip(_ s: String, _ chars: Set<Unicode.Scalar>?, left: Bool, right: Bool) -> String {
        let scalars = Array(s.unicodeScalars)
        let strip: (Unicode.Scalar) -> Bool = { chars?.contains($0) ?? isPyWhitespace($0) }
        var a = 0, b = scalars.count
        if left { while a < b, strip(scalars[a]) { a += 1 } }
        if right { while b > a, strip(scalars[b - 1]) { b -= 1 } }
        var out = ""
        out.unicodeScalars.append(contentsOf: scalars[a..<b])
        return out
    }

    static func pySplit(_ s: String, _ sep: String, maxsplit: Int, fromRight: Bool) -> [String] {
        let parts = s.components(separatedBy: sep)
        guard maxsplit >= 0, parts.count > maxsplit + 1 else { return parts }
        if fromRight {
            let head = parts[0..<(parts.count - maxsplit)].joined(separator: sep)
            return [head] + parts[(parts.count - maxsplit)...]
        }
        return Array(parts[0..<maxsplit]) + [parts[maxsplit...].joined(separator: sep)]
    }

    static func pyReplace(_ s: String, _ old: String, _ new: String, count: Int?) -> String {
        if old.isEmpty { return s }
        let parts = s.components(separatedBy: old)
        guard let count, count >= 0, parts.count - 1 > count else { return parts.joined(separator: new) }
        return parts[0...count].joined(separator: new) + old + parts[(count + 1)...].joined(separator: old)
    }

    // MARK: - Globals

    static func globals(now: Date) -> [String: V] {
        var g: [String: V] = [:]
        g["range"] = .callable(.init("range") { args, _ in
            let ints = args.compactMap(\.integer)
            guard ints.count == args.count, (1...3).contains(ints.count) else { throw TemplateValueError("range() takes 1 to 3 integers") }
            let (start, stop, step) = ints.count == 1 ? (0, ints[0], 1) : (ints[0], ints[1], ints.count == 3 ? ints[2] : 1)
            guard step != 0 else { throw TemplateValueError("range() arg 3 must not be zero") }
            let (span, overflow) = stop.subtractingReportingOverflow(start)
            guard !overflow, span / step > -1_000_000, span / step < 1_000_000 else { throw TemplateValueError("range() too long") }
            return .array(stride(from: start, to: stop, by: step).map { .int($0) })
        })
        g["namespace"] = .callable(.init("namespace") { args, kwargs in
            var o = TemplateValue.TemplateObject()
            if let first = args.first, case let .object(initial) = first { o = initial }
            for (k, v) in kwargs { o[k] = v }
            return .namespace(.init(o))
        })
        g["dict"] = .callable(.init("dict") { _, kwargs in .object(TemplateValue.TemplateObject(kwargs)) })
        g["raise_exception"] = .callable(.init("raise_exception") { args, _ in
            throw RaisedError.message(args.first?.pyStr ?? "")
        })
        g["strftime_now"] = .callable(.init("strftime_now") { args, _ in
            .string(strftime(args.first?.pyStr ?? "", now))
        })
        return g
    }

    /// The subset of C `strftime` templates use for dates (`%Y-%m-%d`, `%d %b %Y`, `%B`, `%H:%M:%S`), in UTC.
    static func strftime(_ format: String, _ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second, .weekday], from: date)
        let months = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"]
        let days = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
        var out = ""
        var percent = false
        for ch in format {
            if !percent {
                if ch == "%" { percent = true } else { out.append(ch) }
                continue
            }
            percent = false
            switch ch {
            case "Y": out += String(c.year!)
            case "y": out += String(format: "%02d", c.year! % 100)
            case "m": out += String(format: "%02d", c.month!)
            case "d": out += String(format: "%02d", c.day!)
            case "e": out += String(format: "%2d", c.day!)
            case "H": out += String(format: "%02d", c.hour!)
            case "M": out += String(format: "%02d", c.minute!)
            case "S": out += String(format: "%02d", c.second!)
            case "B": out += months[c.month! - 1]
            case "b": out += String(months[c.month! - 1].prefix(3))
            case "A": out += days[c.weekday! - 1]
            case "a": out += String(days[c.weekday! - 1].prefix(3))
            case "%": out += "%"
            default: out += "%" + String(ch)
            }
        }
        return out
    }
}
