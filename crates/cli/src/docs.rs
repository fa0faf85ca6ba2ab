//! `zmesh completions SHELL` (clap_complete) and `zmesh man` (clap_mangen): generated from the
//! same command definition as `--help`, so they never disagree with it.

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::Cli;

/// `zmesh completions` options.
#[derive(Args, Debug)]
#[command(
    after_help = "Install, e.g.: zmesh completions bash > ~/.local/share/bash-completion/completions/zmesh"
)]
pub struct CompletionsArgs {
    /// The shell to generate the completion script for.
    shell: Shell,
}

/// Prints the completion script for the chosen shell.
pub fn completions(args: &CompletionsArgs) -> i32 {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "zmesh", &mut std::io::stdout());
    0
}

/// Prints the man page (roff): `zmesh man > zmesh.1; man ./zmesh.1`.
pub fn man() -> Result<i32, zmesh::Error> {
    clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
    Ok(0)
}
