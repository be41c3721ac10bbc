//! `params:`: each param's type, default, choices, pattern and secrecy.

use super::*;

impl Lowerer<'_> {
    pub(super) fn params(&mut self, node: &Node) -> IndexMap<String, Param> {
        let mut out = IndexMap::new();
        let Some(entries) = node.as_map() else {
            self.wrong_type(node, "params", "a mapping of param names to declarations");
            return out;
        };
        for entry in entries {
            if !is_param_name(&entry.key) {
                let d = self.error(
                    Code::InvalidIdentifier,
                    entry.key_span,
                    format!("param name {} is not valid", shown_key(&entry.key)),
                );
                d.label = Some("invalid param name".into());
                d.help = Some("use lower-case letters, digits and `_`, starting with a letter or `_` (templates read it as `params.NAME`)".into());
            }
            // `name: {}` and `name:` both declare a required string param.
            let empty = Node {
                value: Value::Map(Vec::new()),
                span: entry.value.span,
                style: None,
            };
            let decl = if matches!(entry.value.value, Value::Null) {
                &empty
            } else {
                &entry.value
            };
            if let Some(param) = self.param(decl, &entry.key, entry.key_span) {
                out.insert(entry.key.clone(), param);
            }
        }
        out
    }

    pub(super) fn param(&mut self, node: &Node, name: &str, key_span: Span) -> Option<Param> {
        let what = format!("param `{name}`");
        let entries = self.mapping(node, &what, PARAM_KEYS, &[])?;
        let mut param = Param {
            description: None,
            kind: ParamType::String,
            default: None,
            required: None,
            secret: false,
            env: None,
            allowed: None,
            span: key_span,
        };
        if let Some(t) = node.get("type") {
            match t.as_str() {
                Some("string") => param.kind = ParamType::String,
                Some("integer") => param.kind = ParamType::Integer,
                Some("number") => param.kind = ParamType::Number,
                Some("boolean") => param.kind = ParamType::Boolean,
                _ => self.invalid_choice(
                    t,
                    &format!("params.{name}.type"),
                    &["string", "integer", "number", "boolean"],
                ),
            }
        }
        for entry in entries {
            let v = &entry.value;
            let field = format!("params.{name}.{}", entry.key);
            match entry.key.as_str() {
                "description" => param.description = self.string(v, &field).map(|s| s.value),
                "required" => param.required = self.bool(v, &field),
                "secret" => param.secret = self.bool(v, &field).unwrap_or(false),
                "env" => {
                    if let Some(s) = self.string(v, &field) {
                        if !is_env_name(&s) {
                            self.error(
                                Code::InvalidIdentifier,
                                v.span,
                                format!(
                                    "`{field}` must name an environment variable, found `{}`",
                                    s.value
                                ),
                            );
                        }
                        param.env = Some(s.value);
                    }
                }
                "default" => param.default = self.param_value(v, param.kind, &field),
                "allowed" => {
                    if let Value::Seq(items) = &v.value {
                        if items.is_empty() {
                            self.error(
                                Code::InvalidValue,
                                v.span,
                                format!("`{field}` must list at least one value"),
                            );
                        }
                        let values: Vec<ParamValue> = items
                            .iter()
                            .filter_map(|item| self.param_value(item, param.kind, &field))
                            .collect();
                        param.allowed = Some(values);
                    } else {
                        self.wrong_type(v, &field, "a list of values");
                    }
                }
                _ => {}
            }
        }
        if let (Some(default), Some(allowed)) = (&param.default, &param.allowed)
            && !allowed.is_empty()
            && !allowed.contains(default)
        {
            let span = node.get("default").map_or(node.span, |n| n.span);
            let d = self.error(
                Code::InvalidValue,
                span,
                format!("the default of param `{name}` is not one of its `allowed` values"),
            );
            d.help = Some(format!(
                "allowed: {}",
                allowed
                    .iter()
                    .map(ParamValue::to_text)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Some(param)
    }

    pub(super) fn param_value(
        &mut self,
        node: &Node,
        kind: ParamType,
        field: &str,
    ) -> Option<ParamValue> {
        match (kind, &node.value) {
            (ParamType::String, Value::Str(s)) if s.contains('\0') => {
                self.error(
                    Code::InvalidValue,
                    node.span,
                    format!("`{field}` holds a NUL byte, which no command line or environment variable can carry"),
                );
                None
            }
            (ParamType::String, Value::Str(s)) => Some(ParamValue::String(s.clone())),
            (ParamType::Integer, Value::Int(i)) => Some(ParamValue::Integer(*i)),
            (ParamType::Number, Value::Int(i)) => Some(ParamValue::Number(*i as f64)),
            (ParamType::Number, Value::Float(f)) if f.is_finite() => Some(ParamValue::Number(*f)),
            // `.nan` and `.inf` are YAML floats, but no comparison or command
            // can use one: refused as `--set n=NaN` is.
            (ParamType::Number, Value::Float(_)) => {
                self.error(
                    Code::InvalidValue,
                    node.span,
                    format!("`{field}` must be a finite number, not `.nan` or an infinity"),
                )
                .help = Some("no comparison or command can use one".to_string());
                None
            }
            (ParamType::Boolean, Value::Bool(b)) => Some(ParamValue::Boolean(*b)),
            _ => {
                let expected = match kind {
                    ParamType::String => "a string (the param's type is `string`)",
                    ParamType::Integer => "an integer (the param's type is `integer`)",
                    ParamType::Number => "a number (the param's type is `number`)",
                    ParamType::Boolean => "a boolean (the param's type is `boolean`)",
                };
                self.wrong_type(node, field, expected);
                None
            }
        }
    }
}
