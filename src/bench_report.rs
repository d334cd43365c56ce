//! `udsim bench-report`: the ratio table from criterion's saved estimates (filled in by the benchmark work).
