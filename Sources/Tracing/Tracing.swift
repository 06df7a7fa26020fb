// Tracing: records which experts fire for which tokens at each layer, with hit/miss and
// I/O timing, and exports them (JSONL/CSV, Perfetto) and reports them (HTML/SVG).
// Planned by issue 9. Today `moe logits --experts-out FILE.json` writes the routing choices.
