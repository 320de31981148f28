//! The `pmem` command-line tool.
fn main() {}
