//! Benchmark programs (see `src/bin/`); scripts that run them live in `deploy/bench/`.
#![forbid(unsafe_code)]
