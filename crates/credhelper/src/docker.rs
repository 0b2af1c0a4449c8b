//! The docker credential helper protocol, as `docker-credential-helpers` defines it: the action
//! is the first argument, the input comes on stdin, the answer goes to stdout.
//!
//! - `get`: stdin holds the server URL; stdout gets
//!   `{"ServerURL":"<url>","Username":"AWS","Secret":"<password>"}`.
//! - `store` (stdin: a JSON login) and `erase` (stdin: a server URL): nothing to keep or forget,
//!   tokens are minted on demand; exit 0.
//! - `list`: `{}` (no stored logins).
//! - `version`: `docker-credential-berth (berth) <version>`.
//!
//! On failure the message goes to stdout on one line and the exit code is 1. When the chain has
//! no credentials at all the message is docker's own `credentials not found in native
//! keychain`, so that docker goes on anonymously (public repositories still pull); any other
//! failure (wrong keys, unreachable endpoint) is reported as itself, so that the user sees why.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::SystemTime;

use serde::Serialize;

use crate::env::Env;
use crate::{Error, registry_credentials};

/// The program name docker runs for `"credHelpers": {"<host>": "berth"}`.
pub const PROGRAM: &str = "docker-credential-berth";
/// What docker reads as "no credentials for this server".
pub const NOT_FOUND: &str = "credentials not found in native keychain";
/// What the protocol answers when `get` or `erase` gets no server URL.
pub const MISSING_URL: &str = "no credentials server URL";
/// The usage line, for an unknown action.
pub const USAGE: &str = "Usage: docker-credential-berth <get|store|erase|list|version>";
/// The most read from stdin.
const MAX_INPUT: u64 = 64 * 1024;

/// A protocol action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Print the login for a server.
    Get,
    /// Keep a login (nothing to do).
    Store,
    /// Forget a login (nothing to do).
    Erase,
    /// List logins (none).
    List,
    /// Print the version.
    Version,
}

impl Action {
    /// The action named `s`.
    pub fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "get" => Action::Get,
            "store" => Action::Store,
            "erase" => Action::Erase,
            "list" => Action::List,
            "version" | "--version" | "-v" => Action::Version,
            _ => return None,
        })
    }

    /// Whether the action reads stdin.
    pub fn reads_input(self) -> bool {
        matches!(self, Action::Get | Action::Store | Action::Erase)
    }
}

/// The answer to `get`, in the protocol's field names and order.
#[derive(Serialize)]
pub struct GetOutput<'a> {
    /// The server URL, as given.
    #[serde(rename = "ServerURL")]
    pub server_url: &'a str,
    /// `AWS`.
    #[serde(rename = "Username")]
    pub username: &'a str,
    /// The password.
    #[serde(rename = "Secret")]
    pub secret: &'a str,
}

/// Runs `action` on `input` (stdin); `Ok(stdout)` or `Err(the one-line message for stdout)`.
pub async fn handle(action: Action, input: &str, env: &Env, now: SystemTime) -> Result<String, String> {
    match action {
        Action::Store | Action::Erase => Ok(String::new()),
        Action::List => Ok("{}\n".to_owned()),
        Action::Version => Ok(format!("{PROGRAM} (berth) {}\n", env!("CARGO_PKG_VERSION"))),
        Action::Get => {
            let server_url = input.trim();
            if server_url.is_empty() {
                return Err(MISSING_URL.to_owned());
            }
            match registry_credentials(env, server_url, now).await {
                Ok(login) => {
                    let out = GetOutput { server_url, username: &login.username, secret: &login.password };
                    Ok(format!("{}\n", serde_json::to_string(&out).expect("strings serialize")))
                }
                Err(Error::NoCredentials(_)) => Err(NOT_FOUND.to_owned()),
                Err(e) => Err(one_line(&e.to_string())),
            }
        }
    }
}

/// `s` on one line (the protocol reads one).
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `docker-credential-berth ACTION` / `berth credential-helper ACTION`: reads stdin, answers
/// on stdout, exit code 0 or 1.
pub fn main(action: &str) -> ExitCode {
    let Some(action) = Action::parse(action) else {
        println!("{USAGE}");
        return ExitCode::FAILURE;
    };
    let mut input = String::new();
    if action.reads_input()
        && let Err(e) = std::io::stdin().take(MAX_INPUT).read_to_string(&mut input)
    {
        println!("cannot read standard input: {e}");
        return ExitCode::FAILURE;
    }
    let env = Env::from_process();
    let answer = match crate::block_on(handle(action, &input, &env, SystemTime::now())) {
        Ok(a) => a,
        Err(e) => Err(format!("cannot start: {e}")),
    };
    let mut stdout = std::io::stdout().lock();
    let (text, code) = match answer {
        Ok(text) => (text, ExitCode::SUCCESS),
        Err(message) => (format!("{message}\n"), ExitCode::FAILURE),
    };
    if stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()).is_err() {
        return ExitCode::FAILURE;
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(action: Action, input: &str, env: &Env) -> Result<String, String> {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(handle(
            action,
            input,
            env,
            SystemTime::now(),
        ))
    }

    #[test]
    fn actions() {
        assert_eq!(Action::parse("get"), Some(Action::Get));
        assert_eq!(Action::parse("--version"), Some(Action::Version));
        assert_eq!(Action::parse("GET"), None);
        assert!(Action::Get.reads_input() && !Action::List.reads_input());
    }

    #[test]
    fn store_erase_list_version() {
        let env = Env::default();
        assert_eq!(run(Action::Store, r#"{"ServerURL":"h","Username":"AWS","Secret":"s"}"#, &env), Ok(String::new()));
        assert_eq!(run(Action::Erase, "h", &env), Ok(String::new()));
        assert_eq!(run(Action::List, "", &env), Ok("{}\n".to_owned()));
        assert!(run(Action::Version, "", &env).unwrap().starts_with("docker-credential-berth (berth) "));
    }

    #[test]
    fn get_output_shape() {
        let out = GetOutput { server_url: "127.0.0.1:5000", username: "AWS", secret: "p\"w" };
        assert_eq!(
            serde_json::to_string(&out).unwrap(),
            r#"{"ServerURL":"127.0.0.1:5000","Username":"AWS","Secret":"p\"w"}"#
        );
    }

    #[test]
    fn get_failures() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().to_str().unwrap();
        // No server URL.
        assert_eq!(run(Action::Get, " \n", &Env::default()), Err(MISSING_URL.to_owned()));
        // No credentials anywhere: docker's "not found".
        let env = Env::from_pairs([("HOME", home)]);
        assert_eq!(run(Action::Get, "127.0.0.1:5000", &env), Err(NOT_FOUND.to_owned()));
        // Credentials, but nothing listens: the reason, on one line, and no secret in it.
        let env = Env::from_pairs([
            ("HOME", home),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "very-secret-key"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
        ]);
        let e = run(Action::Get, "127.0.0.1:5000", &env).unwrap_err();
        assert!(e.starts_with("cannot reach http://127.0.0.1:1/"), "{e}");
        assert!(!e.contains('\n') && !e.contains("very-secret-key"));
        // Nothing was cached.
        assert!(!tmp.path().join(".cache").exists());
        // A server URL that is no host.
        let e = run(Action::Get, "user@host", &env).unwrap_err();
        assert!(e.contains("is not a registry host"), "{e}");
    }
}
