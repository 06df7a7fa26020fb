import Foundation
import TestSupport
import XCTest

@testable import ChatTemplate

/// Golden renderings made by transformers' own jinja2 environment (tools/make_chat_template_fixtures.py).
final class ChatTemplateGoldenTests: XCTestCase {
    struct Fixture: Decodable {
        struct Case: Decodable {
            let template: String
            let conversation: String
            let bos: String
            let eos: String
            let messages: [ChatMessage]
            let add_generation_prompt: Bool
            let variables: [String: Bool]
            let expected: String?
            let error: String?
        }
        let cases: [Case]
    }

    func testRealTemplatesMatchTransformers() throws {
        let dir = Fixtures.root.appendingPathComponent("chat-templates")
        let fixture = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: dir.appendingPathComponent("cases.json")))
        XCTAssertGreaterThan(fixture.cases.count, 100)
        var templates: [String: ChatTemplate] = [:]
        let date = ISO8601DateFormatter().date(from: "2025-06-01T09:30:00Z")!
        var checked = Set<String>()
        for c in fixture.cases {
            if templates[c.template] == nil {
                let source = try String(contentsOf: dir.appendingPathComponent(c.template + ".jinja"), encoding: .utf8)
                templates[c.template] = try ChatTemplate(source)
            }
            let label = "\(c.template) / \(c.conversation) / gen=\(c.add_generation_prompt) / \(c.variables)"
            let variables = c.variables.mapValues { TemplateValue.bool($0) }
            do {
                let out = try templates[c.template]!.render(messages: c.messages, addGenerationPrompt: c.add_generation_prompt,
                                                             bosToken: c.bos, eosToken: c.eos, variables: variables, now: date)
                if let expected = c.expected {
                    XCTAssertEqual(out, expected, label)
                    if out != expected { print("--- ours\n\(out)\n--- expected\n\(expected)") }
                } else {
                    XCTFail("\(label): expected error \(c.error ?? "")")
                }
            } catch let TemplateError.raised(message, _) {
                XCTAssertEqual(message, c.error, label)
            } catch {
                XCTFail("\(label): \(error)")
            }
            checked.insert(c.template)
        }
        XCTAssertEqual(checked.count, 15)
    }
}

final class ChatTemplateTests: XCTestCase {
    func render(_ source: String, _ variables: [String: TemplateValue] = [:], messages: [ChatMessage] = []) throws -> String {
        try ChatTemplate(source).render(messages: messages, addGenerationPrompt: false, variables: variables)
    }

    func testWhitespaceControlAsTransformers() throws {
        // trim_blocks + lstrip_blocks: block lines vanish entirely.
        XCTAssertEqual(try render("a\n  {% if true %}\n  b\n  {% endif %}\nc"), "a\n  b\nc")
        XCTAssertEqual(try render("a  {{- ' b ' -}}  c"), "a b c")
        XCTAssertEqual(try render("x {#- comment -#} y"), "xy")
        XCTAssertEqual(try render("  {%+ if true %}k{% endif %}"), "  k")
        XCTAssertEqual(try render("{{ 'a' }}\nb"), "a\nb")  // no trim after an output tag
    }

    func testExpressionsAndFilters() throws {
        XCTAssertEqual(try render("{{ 1 + 2 * 3 }} {{ 7 // 2 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 7 / 2 }}"), "7 3 2 1024 3.5")
        XCTAssertEqual(try render("{{ 'a' ~ 1 ~ none }} {{ 'x' + 'y' }}"), "a1None xy")
        XCTAssertEqual(try render("{{ [1, 2, 3][1:] }} {{ 'hello'[::-1] }} {{ [1,2,3][-1] }}"), "[2, 3] olleh 3")
        XCTAssertEqual(try render("{{ '  hi  ' | trim | upper }}|{{ 'AbC' | lower }}|{{ [1,2] | length }}"), "HI|abc|2")
        XCTAssertEqual(try render("{{ x | default('d') }} {{ '' | default('e', true) }}"), "d e")
        XCTAssertEqual(try render("{{ ['a','b'] | join(', ') }} {{ ['a','b'] | first }}{{ ['a','b'] | last }}"), "a, b ab")
        XCTAssertEqual(try render("{{ {'k': [1, 'two', none, true, 1.5]} | tojson }}"), "{\"k\": [1, \"two\", null, true, 1.5]}")
        XCTAssertEqual(try render("{{ {'a': {'b': 1}} | tojson(indent=2) }}"), "{\n  \"a\": {\n    \"b\": 1\n  }\n}")
        XCTAssertEqual(try render("{{ 'é\"\\n' | tojson }}"), "\"é\\\"\\n\"")
        XCTAssertEqual(try render("{% for k, v in {'a': 1, 'b': 2} | items %}{{ k }}={{ v }};{% endfor %}"), "a=1;b=2;")
        XCTAssertEqual(try render("{{ 'aXbXc' | replace('X', '-') }} {{ 3 | string ~ '!' }}"), "a-b-c 3!")
        let messages: [ChatMessage] = [.system("s"), .user("u1"), .assistant("a"), .user("u2")]
        XCTAssertEqual(try render("{{ messages | selectattr('role', 'equalto', 'user') | map(attribute='content') | join(',') }}", messages: messages), "u1,u2")
        XCTAssertEqual(try render("{{ messages | rejectattr('role', 'equalto', 'user') | list | length }}", messages: messages), "2")
    }

    func testMethodsTestsAndLogic() throws {
        XCTAssertEqual(try render("{{ ' x '.strip() }}|{{ 'a,b'.split(',') }}|{{ 'abc'.startswith('ab') }}|{{ 'abc'.endswith(('x', 'c')) }}"), "x|['a', 'b']|True|True")
        XCTAssertEqual(try render("{{ '\\n\\nx'.lstrip('\\n') }}|{{ 'x  '.rstrip() }}|{{ 'a b  c'.split() }}"), "x|x|['a', 'b', 'c']")
        XCTAssertEqual(try render("{{ x is defined }} {{ none is none }} {{ 'a' is string }} {{ 3 is not string }} {{ false is false }} {{ 0 is false }}"),
                       "False True True True True False")
        XCTAssertEqual(try render("{{ 'b' in 'abc' }} {{ 2 not in [1, 3] }} {{ 'k' in {'k': 1} }}"), "True True True")
        XCTAssertEqual(try render("{{ 1 < 2 <= 2 }} {{ 'a' if false else 'b' }} {{ none or 'z' }} {{ 1 and 0 }}"), "True b z 0")
        XCTAssertEqual(try render("{{ 'yes' if x }}|"), "|")
    }

    func testLoopsSetNamespaceMacro() throws {
        XCTAssertEqual(try render("{% for x in [1,2,3] %}{{ loop.index }}{{ loop.index0 }}{% if loop.first %}F{% endif %}{% if loop.last %}L{% endif %} {% endfor %}"),
                       "10F 21 32L ")
        XCTAssertEqual(try render("{% for x in [] %}a{% else %}empty{% endfor %}"), "empty")
        XCTAssertEqual(try render("{% for x in range(10) if x % 3 == 0 %}{{ x }}{{ '' if loop.last else ',' }}{% endfor %}"), "0,3,6,9")
        XCTAssertEqual(try render("{% for x in range(5) %}{% if x == 3 %}{% break %}{% endif %}{% if x == 1 %}{% continue %}{% endif %}{{ x }}{% endfor %}"), "02")
        // set inside a loop does not leak; namespace attributes do.
        XCTAssertEqual(try render("{% set a = 1 %}{% set ns = namespace(b=1) %}{% for x in [5] %}{% set a = x %}{% set ns.b = x %}{% endfor %}{{ a }}{{ ns.b }}"), "15")
        XCTAssertEqual(try render("{% set a, b = [1, 2] %}{{ b }}{{ a }}"), "21")
        XCTAssertEqual(try render("{% set block %}in{{ 1 }}{% endset %}[{{ block }}]"), "[in1]")
        XCTAssertEqual(try render("{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('A') }} {{ greet('B', punct='?') }}"), "Hi A! Hi B?")
        XCTAssertEqual(try render("{{ strftime_now('%Y') | length }}"), "4")
    }

    func testErrorsNameLineAndColumn() throws {
        XCTAssertThrowsError(try ChatTemplate("ok\n{% if x %}never closed")) { error in
            guard case let TemplateError.syntax(_, loc) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(loc, SourceLocation(line: 2, column: 1))
        }
        XCTAssertThrowsError(try ChatTemplate("{{ a + }}")) { error in
            guard case TemplateError.syntax = error else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try ChatTemplate("{% call foo() %}{% endcall %}")) { error in
            XCTAssertTrue("\(error)".contains("unsupported statement `{% call %}`"), "\(error)")
        }
        XCTAssertThrowsError(try render("line1\n  {{ x | nosuchfilter }}")) { error in
            guard case let TemplateError.render(message, loc) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("nosuchfilter"))
            XCTAssertEqual(loc.line, 2)
        }
        XCTAssertThrowsError(try render("{{ raise_exception('nope') }}")) { error in
            XCTAssertEqual(error as? TemplateError, .raised("nope", SourceLocation(line: 1, column: 4)))
        }
        // Found by fuzzing (tools/fuzz, target template): the template's own text, control
        // characters and all, went into the message. It is shown on one line, escaped and cut.
        XCTAssertThrowsError(try render("{{ raise_exception('roles must alt\r\u{0}\u{0}ernate' + 'x' * 1000) }}")) { error in
            XCTAssertTrue("\(error)".hasPrefix(#"the chat template rejected the conversation (line 1, column 4): roles must alt\r\0\0ernatexx"#), "\(error)")
            XCTAssertTrue("\(error)".hasSuffix("… (723 more characters)"), "\(error)")
        }
        XCTAssertThrowsError(try ChatTemplate("{% if x %}\n\n{% bad\u{1b}[31m %}")) { error in
            XCTAssertFalse("\(error)".contains("\u{1b}"), "\(error)")
        }
        XCTAssertThrowsError(try render("{{ x.y }}")) { error in
            XCTAssertTrue("\(error)".contains("'x' is undefined"), "\(error)")
        }
        XCTAssertThrowsError(try render("{{ 'a' + 1 }}"))
        for broken in ["{{", "{%", "{#", "{{ 'abc }}", "{% for %}", "{% set %}", "{{ [1, }}", "{{ ) }}", "{% endif %}", "{% else %}", "{{ a[:1:2:3] }}"] {
            XCTAssertThrowsError(try ChatTemplate(broken).render(messages: [], addGenerationPrompt: false), broken)
        }
    }
}

/// GPT-OSS's harmony template with tools, tool calls and results, reasoning (`thinking`),
/// developer instructions, `reasoning_effort`, `model_identity` and `builtin_tools`, rendered by
/// transformers' jinja2 environment (tools/make_chat_template_fixtures.py, harmony-cases.json).
final class HarmonyTemplateGoldenTests: XCTestCase {
    struct Case {
        let label: String
        let messages: [TemplateValue]
        let tools: [TemplateValue]?
        let variables: [String: TemplateValue]
        let addGenerationPrompt: Bool
        let bos: String, eos: String
        let expected: String?
        let error: String?
    }

    static func cases() throws -> [Case] {
        let url = Fixtures.root.appendingPathComponent("chat-templates/harmony-cases.json")
        guard case let .object(root) = try TemplateJSON.parse(String(contentsOf: url, encoding: .utf8)),
              case let .array(items)? = root["cases"] else { throw TemplateJSONError(message: "no cases", offset: 0) }
        return items.compactMap { item -> Case? in
            guard case let .object(o) = item, case let .array(messages)? = o["messages"],
                  case let .object(vars)? = o["variables"], case let .bool(gen)? = o["add_generation_prompt"],
                  case let .string(conv)? = o["conversation"], case let .string(bos)? = o["bos"], case let .string(eos)? = o["eos"]
            else { return nil }
            var tools: [TemplateValue]?
            if case let .array(t)? = o["tools"] { tools = t }
            var expected: String?, error: String?
            if case let .string(e)? = o["expected"] { expected = e }
            if case let .string(e)? = o["error"] { error = e }
            let variables = Dictionary(uniqueKeysWithValues: vars.pairs)
            return Case(label: "\(conv) tools=\(tools?.count ?? 0) \(vars.keys) gen=\(gen)", messages: messages, tools: tools,
                        variables: variables, addGenerationPrompt: gen, bos: bos, eos: eos, expected: expected, error: error)
        }
    }

    func testHarmonyTemplateMatchesTransformers() throws {
        let source = try String(contentsOf: Fixtures.root.appendingPathComponent("chat-templates/gpt-oss.jinja"), encoding: .utf8)
        let template = try ChatTemplate(source)
        let date = ISO8601DateFormatter().date(from: "2025-06-01T09:30:00Z")!
        let cases = try Self.cases()
        XCTAssertEqual(cases.count, 120)
        for c in cases {
            do {
                let out = try template.render(messageValues: c.messages, addGenerationPrompt: c.addGenerationPrompt, bosToken: c.bos,
                                              eosToken: c.eos, tools: c.tools, variables: c.variables, now: date)
                XCTAssertEqual(out, c.expected, c.label)
                if out != c.expected { print("--- ours\n\(out)\n--- expected\n\(c.expected ?? "error: \(c.error ?? "")")") }
            } catch let TemplateError.raised(message, _) {
                XCTAssertEqual(message, c.error, c.label)
            } catch {
                XCTFail("\(c.label): \(error)")
            }
        }
    }

    /// The same conversations through ``ChatMessage`` (what `Session` and `moe serve` build):
    /// OpenAI-style tool calls with JSON-text arguments render as transformers renders dicts.
    func testChatMessagesRenderLikeMessageDicts() throws {
        let source = try String(contentsOf: Fixtures.root.appendingPathComponent("chat-templates/gpt-oss.jinja"), encoding: .utf8)
        let template = try ChatTemplate(source)
        let date = ISO8601DateFormatter().date(from: "2025-06-01T09:30:00Z")!
        let wanted = try Self.cases().filter { $0.label.hasPrefix("tool-call-answered") || $0.label.hasPrefix("thinking-multi") }
        XCTAssertFalse(wanted.isEmpty)
        for c in wanted {
            let messages = c.messages.map { v -> ChatMessage in
                guard case let .object(o) = v, case let .string(role)? = o["role"] else { return .user("?") }
                var m = ChatMessage(role: role, content: { if case let .string(s)? = o["content"] { return s }; return "" }())
                if case let .string(t)? = o["thinking"] { m.thinking = t }
                if case let .array(calls)? = o["tool_calls"] {
                    m.toolCalls = calls.compactMap { call in
                        guard case let .object(c) = call, case let .object(f)? = c["function"], case let .string(name)? = f["name"],
                              let args = try? f["arguments"]?.json(indent: nil) else { return nil }
                        return ChatToolCall(name: name, arguments: args)
                    }
                }
                return m
            }
            let out = try template.render(messages: messages, addGenerationPrompt: c.addGenerationPrompt, bosToken: c.bos,
                                          eosToken: c.eos, tools: c.tools, variables: c.variables, now: date)
            XCTAssertEqual(out, c.expected, c.label)
        }
    }

    func testTemplateJSONKeepsOrderAndPythonTypes() throws {
        let v = try TemplateJSON.parse(#" {"b": 1, "a": [1.0, 2e3, -0, "x\u00e9\ud83d\ude00\n", null, true]} "#)
        XCTAssertEqual(try v.json(indent: nil), #"{"b": 1, "a": [1.0, 2000.0, 0, "xé😀\n", null, true]}"#)
        for bad in ["", "{", "[1,]", "{\"a\" 1}", "tru", "\"abc", "1 2", String(repeating: "[", count: 300)] {
            XCTAssertThrowsError(try TemplateJSON.parse(bad), bad.prefix(10).description)
        }
    }
}

/// A chat template comes from a model file: whatever it computes must end in a value or an
/// error, never a trap, a hang or gigabytes (issue 19; tools/fuzz target `template`).
final class HostileTemplateTests: XCTestCase {
    func render(_ source: String) throws -> String {
        try ChatTemplate(source).render(messages: [.user("hi")], addGenerationPrompt: false)
    }

    func testArithmeticAtIntLimitsDoesNotTrap() throws {
        // Python (unbounded ints) gives 0 for the remainder; the quotient and conversions clamp to Int.
        XCTAssertEqual(try render("{{ (-9223372036854775807 - 1) % -1 }}"), "0")
        XCTAssertEqual(try render("{{ (-9223372036854775807 - 1) // -1 }}"), "9223372036854775807")
        XCTAssertEqual(try render("{{ '1e300' | float | int }}|{{ '-1e300' | int }}"), "9223372036854775807|-9223372036854775808")
        XCTAssertEqual(try render("{{ 2 ** 10 }}"), "1024")
        XCTAssertNoThrow(try render("{{ 3 ** 1000000000000000000 }}"))  // by squaring, wrapping like * does
        XCTAssertThrowsError(try render("{% for i in range(-1, 9223372036854775807) %}{% endfor %}")) {
            XCTAssertTrue("\($0)".contains("range() too long"), "\($0)")
        }
    }

    func testWorkAndDepthAreBounded() throws {
        let cases: [(String, String)] = [
            ("{{ 'x' * 1000000000000 }}", "repetition too large"),
            ("{{ [1, 2] * 1000000000000 }}", "repetition too large"),
            ("{{ '' * 1000000000000 }}", "repetition too large"),
            ("{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}", "loop iterations"),
            ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "nested more than 64 deep"),
            ("{{ " + String(repeating: "(", count: 2000) + "1" + String(repeating: ")", count: 2000) + " }}", "at most 512"),
            (String(repeating: "{% if true %}", count: 100) + String(repeating: "{% endif %}", count: 100), "nested more than 64"),
        ]
        for (source, expected) in cases {
            XCTAssertThrowsError(try render(source), String(source.prefix(60))) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(source.prefix(60)): \(error)")
            }
        }
        XCTAssertEqual(try render("{{ 'ab' * 3 }}{{ [1] * 2 }}"), "ababab[1, 1]")
    }
}
