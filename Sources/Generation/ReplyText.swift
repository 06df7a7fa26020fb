import Tokenizer

/// Turns the tokens of a reply into its text as they are generated: decoded and cut at stop
/// strings, or, for a harmony chat turn, split by channel first — the final channel becomes
/// the reply text (stop strings apply to it), analysis and commentary go to `onReasoning`.
///
/// A class, not a struct: as a struct inlined into `Session`'s decode loop, Swift 6.3.1's
/// optimizer (`-c release`, CopyPropagation) aborted with an ownership verifier error on the
/// optional parser. One reply per generation call, used by one thread.
final class ReplyText {
    private var decoder: StreamingDecoder
    private var parser: HarmonyParser?
    private var stops: StopStringMatcher
    private var reasoningMessages = 0

    init(tokenizer: Tokenizer, harmony: HarmonyTokens?, stop: [String]) {
        decoder = tokenizer.streamingDecoder(skipSpecialTokens: true)
        parser = harmony.map { HarmonyParser(tokens: $0, tokenizer: tokenizer) }
        stops = StopStringMatcher(stop)
    }

    /// A stop string appeared.
    var stopped: Bool { stops.stopped }
    /// The messages of a harmony reply so far.
    var messages: [HarmonyMessage] { parser?.messages ?? [] }
    /// Tokens that end the turn besides EOS: `<|return|>`, `<|call|>` for harmony.
    var endOfTurnTokens: Set<Int> { parser?.tokens.stopTokens ?? [] }
    /// A token that must not end the turn although the file may list it as end-of-turn
    /// (harmony's `<|end|>` closes one message).
    var notEndOfTurn: Int? { parser?.tokens.end }

    func append(_ token: Int, into result: inout GenerationResult, onReasoning: (ReasoningPiece) -> Void, onText: (String) -> Void) {
        if parser != nil {
            let piece = parser!.append(token)
            route(piece, into: &result, onReasoning: onReasoning, onText: onText)
        } else {
            emit(stops.append(decoder.append(token)), into: &result, onText: onText)
        }
    }

    /// The token that ended the turn (not part of the text): a harmony parser closes its message with it.
    func endOfTurn(_ token: Int, into result: inout GenerationResult, onReasoning: (ReasoningPiece) -> Void, onText: (String) -> Void) {
        if parser != nil { append(token, into: &result, onReasoning: onReasoning, onText: onText) }
    }

    /// Generation ended: flush what is held back (an unfinished character, a possible stop-string start).
    func finish(into result: inout GenerationResult, onReasoning: (ReasoningPiece) -> Void, onText: (String) -> Void) {
        if let messages = parser?.messages { result.messages = messages }
        guard !stops.stopped else { return }
        if parser != nil {
            let piece = parser!.finish()
            route(piece, into: &result, onReasoning: onReasoning, onText: onText)
            result.messages = parser!.messages
        } else {
            emit(stops.append(decoder.finish()), into: &result, onText: onText)
        }
        emit(stops.flush(), into: &result, onText: onText)
    }

    private func emit(_ text: String, into result: inout GenerationResult, onText: (String) -> Void) {
        guard !text.isEmpty else { return }
        result.text += text
        onText(text)
    }

    private func route(_ piece: (message: HarmonyMessage, text: String)?, into result: inout GenerationResult,
                                onReasoning: (ReasoningPiece) -> Void, onText: (String) -> Void) {
        guard let piece, let parser else { return }
        if piece.message.isFinal {
            if !stops.stopped { emit(stops.append(piece.text), into: &result, onText: onText) }
            return
        }
        let count = parser.messages.count
        let starts = count != reasoningMessages
        if starts && !result.reasoning.isEmpty { result.reasoning += "\n\n" }
        reasoningMessages = count
        result.reasoning += piece.text
        onReasoning(ReasoningPiece(channel: piece.message.channel, recipient: piece.message.recipient, text: piece.text, startsMessage: starts))
    }
}
