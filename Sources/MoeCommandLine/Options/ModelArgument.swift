import ArgumentParser

/// The model a command reads.
struct ModelArgument: ParsableArguments {
    @Argument(help: "A GGUF file, a Hugging Face model directory (config.json + *.safetensors), or a .moe store.")
    var model: String
}
