// Tuning: replays recorded expert accesses through cache policies and pool sizes
// (with Belady's MIN as the bound) to recommend a cache configuration. Planned by issue 9.
