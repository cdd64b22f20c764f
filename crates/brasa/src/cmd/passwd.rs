//! `brasa passwd`: credentials for the management API's `[api]` section — an Argon2 hash of a
//! console user's password, or a new random API token with the SHA-256 the config keeps.

use crate::common::access::{generate_token, hash_password, token_digest_hex, Role};
use anyhow::{anyhow, Context};
use std::io::{BufRead, IsTerminal, Write};

/// Arguments of `brasa passwd`.
#[derive(clap::Args, Debug)]
pub struct PasswdArgs {
    /// Make a new API token (for the CLI's `--token` and for Prometheus) instead of hashing a
    /// password.
    #[arg(long)]
    pub new_token: bool,
    /// With a name, print the whole `[[api.user]]` or `[[api.token]]` table.
    #[arg(long)]
    pub name: Option<String>,
    /// The role in the printed table.
    #[arg(long, value_parser = ["read-only", "operator"], default_value = "read-only")]
    pub role: String,
}

/// Prints the hash (the password is read from the terminal without echo, twice, or as the
/// first line of standard input), or the token and its digest.
pub fn run(args: PasswdArgs) -> anyhow::Result<()> {
    let role = match args.role.as_str() {
        "operator" => Role::Operator,
        _ => Role::ReadOnly,
    };
    if args.new_token {
        let token = generate_token();
        let digest = token_digest_hex(&token);
        println!("token: {token}");
        match &args.name {
            Some(name) => println!(
                "\n[[api.token]]\nname = {name:?}\nrole = \"{}\"\nsha256 = \"{digest}\"",
                role.as_str()
            ),
            None => println!("sha256: {digest}"),
        }
        eprintln!("Keep the token secret (e.g. in a file for --token-file); the config holds only its SHA-256.");
        return Ok(());
    }
    let password = read_password()?;
    let hash = hash_password(&password);
    match &args.name {
        Some(name) => println!(
            "[[api.user]]\nname = {name:?}\nrole = \"{}\"\npassword_hash = \"{hash}\"",
            role.as_str()
        ),
        None => println!("{hash}"),
    }
    Ok(())
}

fn read_password() -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        let first = prompt("Password: ")?;
        let again = prompt("Again: ")?;
        if first != again {
            return Err(anyhow!("the two passwords differ"));
        }
        first
    } else {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    if password.is_empty() {
        return Err(anyhow!("the password is empty"));
    }
    Ok(password)
}

/// Reads one line from the terminal with echo off.
fn prompt(text: &str) -> anyhow::Result<String> {
    eprint!("{text}");
    std::io::stderr().flush().ok();
    let fd = libc::STDIN_FILENO;
    // SAFETY: tcgetattr/tcsetattr on standard input (a terminal, checked by the caller) with
    // a termios value the first call initialised; the saved settings are restored below.
    let saved = unsafe {
        let mut termios = std::mem::zeroed::<libc::termios>();
        if libc::tcgetattr(fd, &mut termios) != 0 {
            return Err(anyhow!("cannot read the terminal settings"));
        }
        let saved = termios;
        termios.c_lflag &= !libc::ECHO;
        libc::tcsetattr(fd, libc::TCSANOW, &termios);
        saved
    };
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    // SAFETY: as above, restoring the settings read before.
    unsafe {
        libc::tcsetattr(fd, libc::TCSANOW, &saved);
    }
    eprintln!();
    read.context("reading the password")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}
