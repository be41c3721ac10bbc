//! `type: gate` steps: the question, its condition and its timeout.

use super::*;

impl Lowerer<'_> {
    pub(super) fn gate(&mut self, node: &Node, what: &str) -> Option<GateStep> {
        let entries = node.as_map()?;
        let message = match node.get("message") {
            Some(v) => self.filled_template(v, "message"),
            None => {
                self.missing(node, what, "message");
                None
            }
        };
        let mut step = GateStep {
            message: message
                .clone()
                .unwrap_or_else(|| template_of(node, String::new())),
            condition: None,
            on_timeout: None,
        };
        for entry in entries {
            let v = &entry.value;
            match entry.key.as_str() {
                "condition" => step.condition = self.decision(v, "condition"),
                "on_timeout" => {
                    step.on_timeout = self.typed_choice(
                        v,
                        "on_timeout",
                        &[
                            ("reject", OnTimeout::Reject),
                            ("approve", OnTimeout::Approve),
                        ],
                    )
                }
                _ => {}
            }
        }
        let _ = self.source;
        message.map(|_| step)
    }
}
