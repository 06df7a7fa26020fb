import Foundation
import FuzzSupport
import SwiftMoE

/// A chat template (Jinja subset): parsed, then a fixed conversation rendered with and
/// without the generation prompt, with tools and thinking, as `moe chat`/`serve` do.
@_cdecl("fuzz_template_main")
public func main(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    Fuzz.main(argc, argv, { data, size in fuzzTemplate(data, size) })
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTemplate(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    guard let data else { return 0 }
    let source = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    Fuzz.run {
        let template = try ChatTemplate(source)
        for (prompt, extra) in [(true, false), (false, true)] {
            _ = try template.render(messages: extra ? conversationWithTools : conversation, addGenerationPrompt: prompt,
                                    bosToken: "<s>", eosToken: "</s>", tools: extra ? tools : nil,
                                    variables: extra ? ["enable_thinking": .bool(false), "reasoning_effort": .string("high")] : [:],
                                    now: now)
        }
    }
    return 0
}

let now = Date(timeIntervalSince1970: 1_760_000_000)
let conversation: [ChatMessage] = [.system("You are terse."), .user("Hi {{ there }} {% raw %}"), .assistant("Hello."), .user("Weather in Paris?")]
let conversationWithTools: [ChatMessage] = conversation + [
    ChatMessage(role: "assistant", content: "", thinking: "call the tool",
                toolCalls: [ChatToolCall(id: "call_1", name: "get_weather", arguments: "{\"city\": \"Paris\"}")]),
    ChatMessage(role: "tool", content: "{\"temperature\": 21}"),
]
let tools: [TemplateValue] = {
    let json = #"[{"type": "function", "function": {"name": "get_weather", "description": "Weather now", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]"#
    guard case let .array(values)? = try? TemplateJSON.parse(json) else { return [] }
    return values
}()
