//! The terminal prompt for manual gates (used only when stdin is a
//! terminal). It pauses the live display while it waits, and gives way
//! silently when the gate is decided elsewhere (`runbook approve`, timeout).

use crate::reporter::Screen;
use async_trait::async_trait;
use runbook_engine::{Decision, GateRequest, Question};
use std::io::{BufRead, IsTerminal};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{Mutex, mpsc};

/// Asks at the terminal: `y` approves, `n` rejects.
pub struct TerminalPrompt {
    screen: Arc<Screen>,
    lines: OnceLock<Mutex<mpsc::UnboundedReceiver<Input>>>,
}

/// What the terminal gave.
enum Input {
    Line(String),
    /// Ctrl-D: the end of input for now. A terminal can be read again
    /// after it, so a later question still gets its answers.
    End,
}

impl TerminalPrompt {
    /// A prompt that draws on `screen`.
    pub fn new(screen: Arc<Screen>) -> Self {
        TerminalPrompt {
            screen,
            lines: OnceLock::new(),
        }
    }

    /// stdin's lines, read by one thread for the whole run. A blocking read
    /// cannot be cancelled, so rather than one reader per question (which
    /// would leave readers behind, racing for the next answer) there is a
    /// single reader feeding a channel; a question dropped unanswered just
    /// stops listening.
    fn lines(&self) -> &Mutex<mpsc::UnboundedReceiver<Input>> {
        self.lines.get_or_init(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            std::thread::spawn(move || {
                let stdin = std::io::stdin();
                let terminal = stdin.is_terminal();
                let mut line = String::new();
                loop {
                    line.clear();
                    let input = match stdin.lock().read_line(&mut line) {
                        Ok(0) => Input::End,
                        Ok(_) => Input::Line(line.trim_end_matches(['\n', '\r']).to_string()),
                        Err(_) => break,
                    };
                    let ended = matches!(input, Input::End);
                    if sender.send(input).is_err() || (ended && !terminal) {
                        break;
                    }
                }
            });
            Mutex::new(receiver)
        })
    }
}

#[async_trait]
impl runbook_step_gate::Prompt for TerminalPrompt {
    async fn ask(&self, gate: &GateRequest) -> Option<Decision> {
        let mut lines = self.lines().lock().await;
        // Anything typed before this question was asked is not an answer to
        // it: a `y` typed during an earlier step would approve this gate
        // unseen. What the reader thread has taken is dropped here; what is
        // still in the terminal's input queue is discarded by the kernel.
        while lines.try_recv().is_ok() {}
        let _ = nix::sys::termios::tcflush(std::io::stdin(), nix::sys::termios::FlushArg::TCIFLUSH);
        while lines.try_recv().is_ok() {}
        let _paused = self.screen.pause();
        // The question goes below the waiting notice (its message and the
        // commands to decide from another shell), so that the cursor waits
        // right after it; it says the message itself only if the notice
        // never came.
        let announced = self
            .screen
            .await_announcement(&gate.gate, Duration::from_secs(2))
            .await;
        let context = if announced {
            String::new()
        } else {
            match gate.question {
                Question::Approval => format!("\n⏸ gate `{}`: {}\n", gate.gate, gate.message),
                Question::Completed => format!("\n⏸ {}\n", gate.message),
            }
        };
        let mut question = match gate.question {
            Question::Approval => format!("{context}  approve `{}` here? [y/n] ", gate.gate),
            Question::Completed => format!(
                "{context}  did `{}` complete? [y = yes, do not run it again / n = no, run it again] ",
                gate.gate
            ),
        };
        // Whatever else is printed while this question waits (another
        // gate's notice) is followed by the question again, so the cursor
        // never waits under a different gate's words.
        let _asking = self.screen.asking(&question);
        loop {
            self.screen.write_raw(question.as_bytes());
            let Some(Input::Line(answer)) = lines.recv().await else {
                // Ctrl-D, or input that cannot be read any more: no answer
                // comes from here this time, and the gate goes on waiting
                // for the others.
                self.screen.write_raw(
                    "\n  the terminal's input has ended (Ctrl-D): decide with the `runbook approve` command above\n"
                        .as_bytes(),
                );
                return None;
            };
            match answer.trim().to_ascii_lowercase().as_str() {
                "y" | "yes" => return Some(decision(true)),
                "n" | "no" => return Some(decision(false)),
                _ => question = "  please answer y (approve) or n (reject): ".to_string(),
            }
        }
    }
}

fn decision(approved: bool) -> Decision {
    let user = runbook_engine::current_user().unwrap_or_else(|| "unknown".to_string());
    Decision {
        approved,
        decided_by: format!("{user} (terminal)"),
    }
}
