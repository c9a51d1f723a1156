//! Runs one external command (buildah, git, ssh-add...) with its output streamed to our
//! stdout line by line under a stage prefix, keeping the last lines for a failure report.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

/// Why a command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The program could not be started (not installed, not executable).
    #[error("{operation}: cannot start {program}: {source}")]
    Spawn {
        /// What we were doing, e.g. `buildah commit`.
        operation: String,
        /// The program name.
        program: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The program ran and exited unsuccessfully.
    #[error("{operation}: {program} exited with {}", describe_exit(*exit_code))]
    Failed {
        /// What we were doing.
        operation: String,
        /// The program name.
        program: String,
        /// Exit status; `None` when killed by a signal.
        exit_code: Option<i32>,
        /// The last lines of its combined stdout and stderr.
        tail: String,
    },
}

fn describe_exit(code: Option<i32>) -> String {
    match code {
        Some(code) => format!("exit status {code}"),
        None => "a signal".to_owned(),
    }
}

impl CommandError {
    /// Exit status of the failed command, if it ran and exited.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            CommandError::Failed { exit_code, .. } => *exit_code,
            CommandError::Spawn { .. } => None,
        }
    }

    /// The last output lines of the failed command (empty when it never started).
    pub fn tail(&self) -> &str {
        match self {
            CommandError::Failed { tail, .. } => tail,
            CommandError::Spawn { .. } => "",
        }
    }
}

/// Streams command output under a prefix and remembers the last lines.
#[derive(Debug, Clone)]
pub struct Runner {
    prefix: String,
    tail_lines: usize,
    echo: bool,
}

impl Runner {
    /// `prefix` is printed before every output line (e.g. `[2/5 run] `); the last
    /// `tail_lines` lines are kept for [`CommandError::Failed`].
    pub fn new(prefix: impl Into<String>, tail_lines: usize) -> Self {
        Runner {
            prefix: prefix.into(),
            tail_lines,
            echo: true,
        }
    }

    /// A runner that keeps the tail but prints nothing (for commands whose output is data,
    /// like `buildah inspect`).
    pub fn quiet(tail_lines: usize) -> Self {
        Runner {
            prefix: String::new(),
            tail_lines,
            echo: false,
        }
    }

    /// Prints one line of our own under the prefix.
    pub fn say(&self, line: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}{}", self.prefix, line);
        let _ = out.flush();
    }

    /// Runs `command` to completion with stdin closed, echoing stdout and stderr line by line
    /// under the prefix. Returns the captured stdout on exit status 0.
    pub fn run(&self, operation: &str, command: &mut Command) -> Result<String, CommandError> {
        let program = command.get_program().to_string_lossy().into_owned();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| CommandError::Spawn {
                operation: operation.to_owned(),
                program: program.clone(),
                source,
            })?;
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(self.tail_lines + 1)));
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let out_thread = self.pump(stdout, tail.clone(), true);
        let err_thread = self.pump(stderr, tail.clone(), false);
        let captured = out_thread.join().unwrap_or_default();
        let _ = err_thread.join();
        let status = child.wait().map_err(|source| CommandError::Spawn {
            operation: operation.to_owned(),
            program: program.clone(),
            source,
        })?;
        if status.success() {
            return Ok(captured);
        }
        let tail = tail
            .lock()
            .map(|t| t.iter().cloned().collect::<Vec<String>>().join("\n"));
        Err(CommandError::Failed {
            operation: operation.to_owned(),
            program,
            exit_code: status.code(),
            tail: tail.unwrap_or_default(),
        })
    }

    /// Copies one pipe to our stdout line by line; returns the text when `capture`.
    fn pump(
        &self,
        pipe: impl Read + Send + 'static,
        tail: Arc<Mutex<VecDeque<String>>>,
        capture: bool,
    ) -> std::thread::JoinHandle<String> {
        let prefix = self.prefix.clone();
        let keep = self.tail_lines;
        let echo = self.echo;
        std::thread::spawn(move || {
            let mut captured = String::new();
            let mut reader = BufReader::new(pipe);
            let mut buf = Vec::new();
            // Lines, not `lines()`: tools print non-UTF-8 bytes and progress bars with `\r`.
            while reader.read_until(b'\n', &mut buf).unwrap_or(0) > 0 {
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim_end_matches(['\n', '\r']);
                if capture {
                    captured.push_str(line);
                    captured.push('\n');
                }
                if echo {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{prefix}{line}");
                }
                if keep > 0
                    && let Ok(mut tail) = tail.lock()
                {
                    if tail.len() == keep {
                        tail.pop_front();
                    }
                    tail.push_back(line.to_owned());
                }
                buf.clear();
            }
            captured
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_stdout_of_a_successful_command() {
        let runner = Runner::new("[t] ", 5);
        let out = runner
            .run(
                "echo",
                Command::new("sh").args(["-c", "echo one; echo two >&2; echo three"]),
            )
            .unwrap();
        assert_eq!(out, "one\nthree\n");
    }

    #[test]
    fn failure_keeps_exit_code_and_only_the_last_lines() {
        let runner = Runner::new("[t] ", 2);
        let err = runner
            .run(
                "script",
                Command::new("sh").args(["-c", "echo a; echo b; echo c; exit 7"]),
            )
            .unwrap_err();
        assert_eq!(err.exit_code(), Some(7));
        assert_eq!(err.tail(), "b\nc");
        assert_eq!(err.to_string(), "script: sh exited with exit status 7");
    }

    #[test]
    fn failure_tail_includes_stderr() {
        let err = Runner::new("", 5)
            .run(
                "script",
                Command::new("sh").args(["-c", "echo oops >&2; exit 1"]),
            )
            .unwrap_err();
        assert_eq!(err.tail(), "oops");
    }

    #[test]
    fn missing_program_is_a_spawn_error_naming_it() {
        let err = Runner::new("", 1)
            .run("probe", &mut Command::new("kiln-no-such-program"))
            .unwrap_err();
        assert!(matches!(err, CommandError::Spawn { .. }));
        assert!(err.to_string().contains("kiln-no-such-program"), "{err}");
    }
}
