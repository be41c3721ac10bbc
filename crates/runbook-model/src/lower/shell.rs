//! `type: shell` steps: the script, its shell, and how it is stopped.

use super::*;

impl Lowerer<'_> {
    pub(super) fn shell(&mut self, node: &Node, what: &str) -> Option<ShellStep> {
        let entries = node.as_map()?;
        let mut ok = true;
        let run = match node.get("run") {
            Some(v) => self.filled_template(v, "run"),
            None => {
                self.missing(node, what, "run");
                None
            }
        };
        let mut step = ShellStep {
            run: run.unwrap_or_else(|| {
                ok = false;
                template_of(node, String::new())
            }),
            shell: None,
            workdir: None,
            success_exit_codes: None,
            read_only: None,
            stop_signal: None,
            grace: None,
        };
        for entry in entries {
            let v = &entry.value;
            match entry.key.as_str() {
                "shell" => {
                    step.shell = self.template_list(v, "shell");
                    if step.shell.as_deref().is_some_and(blank_program) {
                        self.error(
                            Code::InvalidValue,
                            v.span,
                            "`shell` must name a program, such as `[\"sh\", \"-c\"]`".into(),
                        );
                    }
                }
                "workdir" => step.workdir = self.filled_template(v, "workdir"),
                "success_exit_codes" => match &v.value {
                    Value::Seq(items) => {
                        let mut codes = Vec::new();
                        for item in items {
                            match item.value {
                                Value::Int(c) if (0..=255).contains(&c) => codes.push(c as i32),
                                Value::Int(c) => {
                                    ok = false;
                                    self.error(
                                        Code::InvalidValue,
                                        item.span,
                                        format!("`success_exit_codes` must hold exit codes from 0 to 255, found {c}"),
                                    )
                                    .label = Some("not an exit code".into());
                                }
                                _ => {
                                    ok = false;
                                    self.wrong_type(
                                        item,
                                        "success_exit_codes",
                                        "an exit code from 0 to 255",
                                    );
                                }
                            }
                        }
                        if items.is_empty() {
                            let d = self.error(
                                Code::InvalidValue,
                                v.span,
                                "`success_exit_codes` is an empty list, so the step could never succeed".into(),
                            );
                            d.help = Some(
                                "list the exit codes that count as success, such as `[0, 1]`"
                                    .into(),
                            );
                        }
                        step.success_exit_codes = Some(Spanned::new(codes, v.span));
                    }
                    Value::Int(c) if (0..=255).contains(c) => {
                        step.success_exit_codes = Some(Spanned::new(vec![*c as i32], v.span))
                    }
                    _ => self.wrong_type(v, "success_exit_codes", "a list of exit codes"),
                },
                "read_only" => step.read_only = self.typed_bool(v, "read_only"),
                "stop_signal" => {
                    if let Value::Str(text) = &v.value
                        && text.contains("{{")
                    {
                        step.stop_signal = Some(Typed::Template(template_of(v, text.clone())));
                    } else if let Some(s) = self.string(v, "stop_signal") {
                        let normalized = if s.starts_with("SIG") {
                            s.value.clone()
                        } else {
                            format!("SIG{}", s.value)
                        };
                        if SIGNALS.contains(&normalized.as_str()) {
                            step.stop_signal =
                                Some(Typed::Literal(Spanned::new(normalized, s.span)));
                        } else {
                            self.invalid_choice(v, "stop_signal", SIGNALS);
                        }
                    }
                }
                "grace" => step.grace = self.typed_duration(v, "grace"),
                _ => {}
            }
        }
        ok.then_some(step)
    }
}

/// An argv that names no program: empty, or a first word that is blank
/// text (a template may still render to a program).
pub(super) fn blank_program(argv: &[Template]) -> bool {
    argv.first()
        .is_none_or(|program| !program.is_templated() && program.text.trim().is_empty())
}
