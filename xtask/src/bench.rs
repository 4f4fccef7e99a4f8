//! `cargo xtask bench`: being written (see the open issues); fails until it exists.

use anyhow::{Result, bail};

pub fn run(_args: &[String]) -> Result<()> {
    bail!("`cargo xtask bench` is not written yet")
}
