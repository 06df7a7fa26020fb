import Foundation

/// Variables of one scope. Loops and macro calls open a child scope (so `set` inside a
/// loop does not leak out, as in Jinja); `if` does not.
final class Scope {
    var variables: [String: TemplateValue] = [:]
    let parent: Scope?
    init(parent: Scope?) { self.parent = parent }

    func lookup(_ name: String) -> TemplateValue? {
        var s: Scope? = self
        while let current = s {
            if let v = current.variables[name] { return v }
            s = current.parent
        }
        return nil
    }
}

/// Walks the statement tree and writes the output.
struct Interpreter {
    enum LoopControl: Error { case breakLoop, continueLoop }

    let globals: Scope
    /// Date used by `strftime_now`.
    let now: Date
    /// Shared by every copy of this interpreter (macros capture one) during one render.
    let budget = RenderBudget()

    /// What one render may spend: a template comes from a model file, and a loop of loops or a
    /// macro calling itself must end in an error, not hang a chat or overflow the stack.
    /// Real templates take a few thousand steps and a few nested calls.
    final class RenderBudget {
        var steps = 0
        var calls = 0
        static let maxSteps = 100_000
        static let maxCalls = 64

        func step() throws {
            steps += 1
            guard steps <= Self.maxSteps else {
                throw TemplateValueError("the template takes more than \(Self.maxSteps) loop iterations and macro calls")
            }
        }
    }

    func render(_ nodes: [Node], scope: Scope, into out: inout String) throws {
        for node in nodes {
            switch node {
            case let .text(t):
                out += t
            case let .output(e):
                out += try evaluate(e, scope).pyStr
            case let .conditional(branches, otherwise):
                var taken = false
                for (condition, body) in branches where try evaluate(condition, scope).truthy {
                    try render(body, scope: scope, into: &out)
                    taken = true
                    break
                }
                if !taken { try render(otherwise, scope: scope, into: &out) }
            case let .loop(targets, iterable, filter, body, otherwise, loc):
                try renderLoop(targets: targets, iterable: iterable, filter: filter, body: body, otherwise: otherwise, loc: loc, scope: scope, into: &out)
            case let .assign(target, e, loc):
                let value = try evaluate(e, scope)
                switch target {
                case let .names(names):
                    if names.count == 1 {
                        scope.variables[names[0]] = value
                    } else {
                        let items = try iterate(value, loc)
                        guard items.count == names.count else {
                            throw TemplateError.render("cannot unpack \(items.count) values into \(names.count) names", loc)
                        }
                        for (n, v) in zip(names, items) { scope.variables[n] = v }
                    }
                case let .attribute(name, attribute):
                    guard case let .namespace(ns)? = scope.lookup(name) else {
                        throw TemplateError.render("cannot assign attribute `\(attribute)` on `\(name)`: only namespace() objects can be changed", loc)
                    }
                    ns[attribute] = value
                }
            case let .assignBlock(name, body):
                var captured = ""
                try render(body, scope: scope, into: &captured)
                scope.variables[name] = .string(captured)
            case let .macro(name, parameters, body):
                scope.variables[name] = makeMacro(name: name, parameters: parameters, body: body, definedIn: scope)
            case let .filterBlock(name, args, kwargs, body, loc):
                var captured = ""
                try render(body, scope: scope, into: &captured)
                let a = try args.map { try evaluate($0, scope) }
                let k = try kwargs.map { ($0.0, try evaluate($0.1, scope)) }
                out += try applyFilter(name, to: .string(captured), a, k, loc, scope).pyStr
            case .breakLoop:
                throw LoopControl.breakLoop
            case .continueLoop:
                throw LoopControl.continueLoop
            }
        }
    }

    private func renderLoop(targets: [String], iterable: Expr, filter: Expr?, body: [Node], otherwise: [Node], loc: SourceLocation, scope: Scope, into out: inout String) throws {
        let loopScope = Scope(parent: scope)
        func bind(_ item: TemplateValue) throws {
            if targets.count == 1 {
                loopScope.variables[targets[0]] = item
            } else {
                let parts = try iterate(item, loc)
                guard parts.count == targets.count else {
                    throw TemplateError.render("cannot unpack \(parts.count) values into \(targets.count) loop variables", loc)
                }
                for (n, v) in zip(targets, parts) { loopScope.variables[n] = v }
            }
        }
        var items = try iterate(try evaluate(iterable, scope), iterable.location)
        if let filter {
            items = try items.filter { item in
                try bind(item)
                return try evaluate(filter, loopScope).truthy
            }
        }
        if items.isEmpty {
            try render(otherwise, scope: scope, into: &out)
            return
        }
        let count = items.count
        for (i, item) in items.enumerated() {
            do { try budget.step() } catch let error as TemplateValueError { throw TemplateError.render(error.message, loc) }
            try bind(item)
            var loop = TemplateValue.TemplateObject()
            loop["index"] = .int(i + 1)
            loop["index0"] = .int(i)
            loop["revindex"] = .int(count - i)
            loop["revindex0"] = .int(count - i - 1)
            loop["first"] = .bool(i == 0)
            loop["last"] = .bool(i == count - 1)
            loop["length"] = .int(count)
            loop["depth"] = .int(1)
            loop["depth0"] = .int(0)
            loop["previtem"] = i > 0 ? items[i - 1] : .undefined
            loop["nextitem"] = i + 1 < count ? items[i + 1] : .undefined
            loop["cycle"] = .callable(.init("cycle") { args, _ in args.isEmpty ? .undefined : args[i % args.count] })
            loopScope.variables["loop"] = .object(loop)
            do {
                try render(body, scope: loopScope, into: &out)
            } catch LoopControl.continueLoop {
                continue
            } catch LoopControl.breakLoop {
                break
            }
        }
    }

    private func makeMacro(name: String, parameters: [(String, Expr?)], body: [Node], definedIn scope: Scope) -> TemplateValue {
        .callable(.init(name) { args, kwargs in
            try self.budget.step()
            self.budget.calls += 1
            defer { self.budget.calls -= 1 }
            guard self.budget.calls <= RenderBudget.maxCalls else {
                throw TemplateValueError("macro '\(name)' calls nested more than \(RenderBudget.maxCalls) deep")
            }
            let callScope = Scope(parent: scope)
            guard args.count <= parameters.count else {
                throw TemplateValueError("macro '\(name)' takes not more than \(parameters.count) argument(s)")
            }
            for (i, (param, defaultValue)) in parameters.enumerated() {
                if i < args.count {
                    callScope.variables[param] = args[i]
                } else if let v = kwargs.first(where: { $0.0 == param })?.1 {
                    callScope.variables[param] = v
                } else if let defaultValue {
                    callScope.variables[param] = try self.evaluate(defaultValue, callScope)
                } else {
                    callScope.variables[param] = .undefined
                }
            }
            for (k, _) in kwargs where !parameters.contains(where: { $0.0 == k }) {
                throw TemplateValueError("macro '\(name)' takes no keyword argument '\(k)'")
            }
            var out = ""
            try self.render(body, scope: callScope, into: &out)
            return .string(out)
        })
    }

    // MARK: - Expressions

    func evaluate(_ e: Expr, _ scope: Scope) throws -> TemplateValue {
        do {
            return try evaluateUnlocated(e, scope)
        } catch let error as TemplateValueError {
            throw TemplateError.render(error.message, e.location)
        } catch let RaisedError.message(m) {
            throw TemplateError.raised(m, e.location)
        }
    }

    private func evaluateUnlocated(_ e: Expr, _ scope: Scope) throws -> TemplateValue {
        switch e.kind {
        case let .literal(v):
            return v
        case let .name(n):
            return scope.lookup(n) ?? .undefined
        case let .list(items):
            return .array(try items.map { try evaluate($0, scope) })
        case let .tuple(items):
            return .array(try items.map { try evaluate($0, scope) })
        case let .dict(pairs):
            var o = TemplateValue.TemplateObject()
            for (k, v) in pairs { o[try evaluate(k, scope).pyStr] = try evaluate(v, scope) }
            return .object(o)
        case let .attribute(base, name):
            let b = try evaluate(base, scope)
            if case .undefined = b { throw TemplateValueError("'\(describe(base))' is undefined") }
            return try Builtins.attribute(b, name)
        case let .subscript(base, key):
            let b = try evaluate(base, scope)
            if case .undefined = b { throw TemplateValueError("'\(describe(base))' is undefined") }
            return try Builtins.item(b, try evaluate(key, scope))
        case let .slice(base, a, b, c):
            let v = try evaluate(base, scope)
            func opt(_ x: Expr?) throws -> Int? {
                guard let x else { return nil }
                let value = try evaluate(x, scope)
                if case .none = value { return nil }
                guard let i = value.integer else { throw TemplateValueError("slice indices must be integers") }
                return i
            }
            return try Builtins.slice(v, try opt(a), try opt(b), try opt(c))
        case let .call(callee, argExprs, kwargExprs):
            let f = try evaluate(callee, scope)
            let args = try argExprs.map { try evaluate($0, scope) }
            let kwargs = try kwargExprs.map { ($0.0, try evaluate($0.1, scope)) }
            guard case let .callable(c) = f else {
                throw TemplateValueError("'\(describe(callee))' is \(f.isUndefined ? "undefined" : "not callable (\(f.typeName))")")
            }
            return try c.body(args, kwargs)
        case let .filter(base, name, argExprs, kwargExprs):
            let v = try evaluate(base, scope)
            let args = try argExprs.map { try evaluate($0, scope) }
            let kwargs = try kwargExprs.map { ($0.0, try evaluate($0.1, scope)) }
            return try applyFilter(name, to: v, args, kwargs, e.location, scope)
        case let .test(base, name, argExprs, negated):
            let v = try evaluate(base, scope)
            let args = try argExprs.map { try evaluate($0, scope) }
            let result = try Builtins.test(name, v, args, scope: scope)
            return .bool(result != negated)
        case let .not(x):
            return .bool(!(try evaluate(x, scope).truthy))
        case let .negate(x):
            let v = try evaluate(x, scope)
            switch v {
            case let .int(i): return .int(-i)
            case let .double(d): return .double(-d)
            case let .bool(b): return .int(b ? -1 : 0)
            default: throw TemplateValueError("bad operand type for unary -: '\(v.typeName)'")
            }
        case let .and(a, b):
            let l = try evaluate(a, scope)
            return l.truthy ? try evaluate(b, scope) : l
        case let .or(a, b):
            let l = try evaluate(a, scope)
            return l.truthy ? l : try evaluate(b, scope)
        case let .binary(op, a, b):
            return try Builtins.binary(op, try evaluate(a, scope), try evaluate(b, scope))
        case let .compare(first, rest):
            var left = try evaluate(first, scope)
            for (op, expr) in rest {
                let right = try evaluate(expr, scope)
                guard try Builtins.compare(op, left, right) else { return .bool(false) }
                left = right
            }
            return .bool(true)
        case let .conditional(value, condition, otherwise):
            if try evaluate(condition, scope).truthy { return try evaluate(value, scope) }
            return try otherwise.map { try evaluate($0, scope) } ?? .undefined
        }
    }

    private func applyFilter(_ name: String, to v: TemplateValue, _ args: [TemplateValue], _ kwargs: [(String, TemplateValue)], _ loc: SourceLocation, _ scope: Scope) throws -> TemplateValue {
        do {
            return try Builtins.filter(name, v, args, kwargs, scope: scope)
        } catch let error as TemplateValueError {
            throw TemplateError.render(error.message, loc)
        }
    }

    func iterate(_ v: TemplateValue, _ loc: SourceLocation) throws -> [TemplateValue] {
        do { return try Builtins.iterate(v) } catch let error as TemplateValueError { throw TemplateError.render(error.message, loc) }
    }

    /// A readable name for an expression in error messages (`message.content`).
    private func describe(_ e: Expr) -> String {
        switch e.kind {
        case let .name(n): return n
        case let .attribute(b, n): return describe(b) + "." + n
        case let .subscript(b, k):
            if case let .literal(v) = k.kind { return describe(b) + "[" + v.pyRepr + "]" }
            return describe(b) + "[...]"
        case let .call(c, _, _): return describe(c) + "(...)"
        default: return "expression"
        }
    }
}

/// `raise_exception(message)` from the template.
enum RaisedError: Error { case message(String) }
