// Tokenizer: text <-> token ids from GGUF metadata (`tokenizer.ggml.*`) and Hugging Face
// `tokenizer.json` (SentencePiece-style and byte-level BPE), chat templates and sampling.
// Planned by issue 5; until then the command line takes token ids (`--tokens 1,5,9`).
