//! `apisensor man`: the manual page (roff, section 8), generated from the command line's
//! definition; the Debian package ships it as `apisensor.8`.
use std::io::Write as _;

use anyhow::Context as _;
use clap::CommandFactory as _;

/// The manual page, in roff.
pub fn page() -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(super::Cli::command())
        .section("8")
        .render(&mut out)
        .context("rendering the manual page")?;
    Ok(out)
}

/// Prints the manual page on stdout (`apisensor man | man -l -` shows it).
pub fn main() -> anyhow::Result<()> {
    std::io::stdout()
        .write_all(&page()?)
        .context("writing the manual page")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_documents_every_subcommand() {
        let page = String::from_utf8(super::page().expect("page")).expect("UTF-8");
        assert!(page.starts_with(".ie \\n(.g .ds Aq"), "{page}");
        assert!(page.contains(".TH apisensor 8"), "{page}");
        for command in [
            "run",
            "blocks",
            "allow",
            "stats",
            "top",
            "replay",
            "config",
            "completions",
            "man",
        ] {
            assert!(
                page.contains(&format!("apisensor\\-{command}")),
                "{command} missing:\n{page}"
            );
        }
    }
}
