//! `cargo xtask demo`: being written (see the open issues); fails until it exists.

use anyhow::{Result, bail};

pub fn run(_args: &[String]) -> Result<()> {
    bail!("`cargo xtask demo` is not written yet")
}
