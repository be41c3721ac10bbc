//! YAML into a tree of spanned nodes: the first of the two parsing phases.
//!
//! We build our own tree from `saphyr-parser` events instead of deserializing
//! straight into the model, because validation must report *every* problem
//! with its position, and serde stops at the first error. The loader also
//! guards against hostile input: nesting depth and alias expansion are
//! bounded, so a "billion laughs" document or a 100,000-deep flow sequence
//! ends in a diagnostic instead of exhausting memory or the stack.

use crate::diagnostic::{Code, Diagnostic};
use crate::span::Span;
use saphyr_parser::{Event, Parser, ScalarStyle};
use std::collections::HashMap;

/// Deepest nesting we accept. Real runbooks stay under 15 levels; the bound
/// exists so that recursive walks (and dropping the tree) cannot overflow.
pub const MAX_DEPTH: usize = 128;

/// Most nodes one document may expand to once aliases are resolved.
pub const MAX_NODES: usize = 2_000_000;

/// Most nodes, and bytes of text, that aliases may add to a document. Each
/// alias is a copy of what it names, so nodes alone do not bound memory: a
/// 2 KB file of nine-fold aliases over a 2,000-byte string took 2.4 GB.
/// Runbooks alias a shared `env` or `retry` block, far below these.
pub const MAX_ALIAS_NODES: usize = 100_000;
/// See [`MAX_ALIAS_NODES`].
pub const MAX_ALIAS_BYTES: usize = 16 << 20;

/// A YAML node with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// Where the node is written.
    pub span: Span,
    /// How a scalar was written; `None` for collections.
    pub style: Option<ScalarKind>,
}

/// How a scalar was written in the source. It matters for templates (to map an
/// offset inside the value back to a file position) and for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScalarKind {
    /// Unquoted.
    Plain,
    /// `'single'` quoted.
    SingleQuoted,
    /// `"double"` quoted.
    DoubleQuoted,
    /// A `|` block: each line of the value is a line of the file, at the
    /// block's indentation.
    Literal,
    /// A `>` block, whose lines are folded into one.
    Folded,
}

/// The value of a [`Node`], resolved with the YAML 1.2 core schema.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `null`, `~` or nothing.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in file order.
    Map(Vec<Entry>),
}

/// One `key: value` pair of a mapping.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The key (keys must be scalars; their text is kept).
    pub key: String,
    /// Where the key is written.
    pub key_span: Span,
    /// The value.
    pub value: Node,
}

impl Node {
    /// A short name of the node's type for messages ("a string", "a mapping").
    pub fn type_name(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// The entries when the node is a mapping.
    pub fn as_map(&self) -> Option<&[Entry]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// The string when the node is a string scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Looks up `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|entry| entry.key == key)
            .map(|entry| &entry.value)
    }

    /// Converts to JSON, dropping positions (used for free-form values such as
    /// HTTP JSON bodies and patches).
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Str(s) => serde_json::Value::String(s.clone()),
            Value::Seq(items) => {
                serde_json::Value::Array(items.iter().map(Node::to_json).collect())
            }
            Value::Map(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.to_json()))
                    .collect(),
            ),
        }
    }

    /// Visits every string scalar in the tree (values, not keys).
    pub fn for_each_string<'a>(&'a self, f: &mut dyn FnMut(&'a Node, &'a str)) {
        match &self.value {
            Value::Str(s) => f(self, s),
            Value::Seq(items) => items.iter().for_each(|item| item.for_each_string(f)),
            Value::Map(entries) => entries.iter().for_each(|e| e.value.for_each_string(f)),
            Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_) => {}
        }
    }
}

/// Maps the parser's character offsets to byte offsets and positions.
struct Positions<'a> {
    /// Byte offset of each character, only built when the text is not ASCII.
    char_to_byte: Option<Vec<usize>>,
    content_end: Span,
    len: usize,
    _text: std::marker::PhantomData<&'a str>,
}

impl<'a> Positions<'a> {
    fn new(text: &'a str) -> Self {
        let char_to_byte = (!text.is_ascii()).then(|| {
            let mut offsets: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
            offsets.push(text.len());
            offsets
        });
        Positions {
            char_to_byte,
            content_end: content_end(text),
            len: text.len(),
            _text: std::marker::PhantomData,
        }
    }

    fn byte(&self, char_index: usize) -> usize {
        match &self.char_to_byte {
            Some(offsets) => offsets.get(char_index).copied().unwrap_or(self.len),
            None => char_index.min(self.len),
        }
    }

    fn span(&self, span: &saphyr_parser::Span) -> Span {
        let start = self.byte(span.start.index());
        let end = self.byte(span.end.index()).max(start);
        self.within_content(Span {
            start,
            end,
            line: u32::try_from(span.start.line()).unwrap_or(u32::MAX),
            col: u32::try_from(span.start.col() + 1).unwrap_or(u32::MAX),
        })
    }

    /// `span`, or the end of the last line with text when it starts past it:
    /// the scanner places the end of the input on a line after the last,
    /// which an editor does not show (a file without a final newline has
    /// no such line at all).
    fn within_content(&self, span: Span) -> Span {
        if span.start < self.content_end.start {
            span
        } else {
            self.content_end
        }
    }
}

/// Where the last line with text ends: trailing line breaks are not lines
/// an editor can jump to.
fn content_end(text: &str) -> Span {
    let content = text.trim_end_matches(['\n', '\r']);
    let line_start = content.rfind(['\n', '\r']).map_or(0, |i| i + 1);
    let line = content.bytes().filter(|&b| b == b'\n').count()
        + content.bytes().filter(|&b| b == b'\r').count()
        - content.matches("\r\n").count()
        + 1;
    Span {
        start: content.len(),
        end: content.len(),
        line: u32::try_from(line).unwrap_or(u32::MAX),
        col: u32::try_from(content[line_start..].chars().count() + 1).unwrap_or(u32::MAX),
    }
}

/// A scanner error, said the way an author finds the mistake: the
/// scanner notices a tab or a missing `:` only further on, on the line
/// after, so the two commonest slips are pointed at where they are.
fn syntax_error(text: &str, span: Span, info: &str) -> Diagnostic {
    let lines: Vec<&str> = text.lines().collect();
    let first_line = usize::try_from(span.line).unwrap_or(usize::MAX).max(1);
    // The scanner's words for a tab ("found a tab", "tabs disallowed …"),
    // not "unprintable".
    let about_a_tab = info
        .split(|c: char| !c.is_ascii_alphabetic())
        .any(|word| word == "tab" || word == "tabs");
    if about_a_tab {
        // The tab is on the line the scanner stopped on or the next one:
        // it notices at the end of a plain value.
        let tabbed = lines
            .iter()
            .enumerate()
            .skip(first_line - 1)
            .take(2)
            .find_map(|(i, line)| {
                let indent = &line[..line.len() - line.trim_start_matches([' ', '\t']).len()];
                indent.find('\t').map(|at| (i, at))
            });
        if let Some((index, at)) = tabbed {
            return Diagnostic::error(
                Code::YamlSyntax,
                span_at(text, &lines, index, at),
                "invalid YAML: a tab in the indentation".to_string(),
            )
            .with_label("tab here")
            .with_help("YAML indents with spaces only; replace the tab with spaces");
        }
    }
    if info.starts_with("simple key expect") {
        // The line the scanner stopped on, if it stopped at its end, else
        // the one before: the nearest line with text that is not a comment.
        let at_end = lines.get(first_line - 1).is_some_and(|line| {
            line.trim_end().chars().count() < usize::try_from(span.col).unwrap_or(0)
        });
        let last = if at_end { first_line } else { first_line - 1 };
        let keyless = (0..last.min(lines.len()))
            .rev()
            .find(|&i| {
                let line = lines[i].trim();
                !line.is_empty() && !line.starts_with('#')
            })
            .filter(|&i| {
                let line = lines[i].trim();
                !line.contains(':')
                    && !line.starts_with(['-', '[', '{', '"', '\'', '|', '>', '&', '*', '!'])
            });
        if let Some(index) = keyless {
            let at = lines[index].len() - lines[index].trim_start().len();
            let word = lines[index].trim();
            return Diagnostic::error(
                Code::YamlSyntax,
                span_at(text, &lines, index, at),
                format!("invalid YAML: `{word}` is neither `key: value` nor a list item"),
            )
            .with_label("no `:` after this")
            .with_help(match word.split_once(char::is_whitespace) {
                Some((key, value)) => format!("is a `:` missing, as in `{key}: {}`?", value.trim()),
                None => format!("is a `:` missing, as in `{word}: ...`?"),
            });
        }
    }
    Diagnostic::error(Code::YamlSyntax, span, format!("invalid YAML: {info}")).with_label("here")
}

/// The position of byte `at` of line `index` (0-based) of `lines`, the
/// lines of `text`.
fn span_at(text: &str, lines: &[&str], index: usize, at: usize) -> Span {
    let line = lines[index];
    // `lines` are slices of `text`, so the offset is the pointers' distance.
    let start = line.as_ptr() as usize - text.as_ptr() as usize + at;
    Span {
        start,
        end: start + line[at..].chars().next().map_or(0, char::len_utf8),
        line: u32::try_from(index + 1).unwrap_or(u32::MAX),
        col: u32::try_from(line[..at].chars().count() + 1).unwrap_or(u32::MAX),
    }
}

enum Frame {
    Seq {
        items: Vec<Node>,
        span: Span,
        anchor: usize,
    },
    Map {
        entries: Vec<Entry>,
        /// Key to index in `entries`, built once the mapping is large: a
        /// linear search for duplicates made a 5,000-step file quadratic
        /// (40 % of `validate`'s time went to comparing keys).
        index: Option<HashMap<String, usize>>,
        /// The key read, waiting for its value; `None` for the placeholder
        /// of a complex key (already reported), whose entry is dropped.
        pending_key: Option<(Option<String>, Span)>,
        span: Span,
        anchor: usize,
    },
}

/// Entries from which a mapping's duplicate-key check uses a hash index.
const INDEXED_MAP_LEN: usize = 16;

/// A parsed document and the problems that did not stop parsing (duplicate
/// keys, unsupported tags): the tree is still usable to find more.
#[derive(Debug)]
pub struct Parsed {
    /// The root node (`Null` for an empty document).
    pub root: Node,
    /// Recoverable problems.
    pub diagnostics: Vec<Diagnostic>,
}

/// Parses `text` as a single YAML document. `Err` means the document could
/// not be read at all (syntax error, limits); recoverable problems come
/// with the tree in [`Parsed::diagnostics`].
pub fn parse(text: &str) -> Result<Parsed, Vec<Diagnostic>> {
    let positions = Positions::new(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, (Node, Measure)> = HashMap::new();
    let mut aliased = Measure::default();
    let mut root: Option<Node> = None;
    let mut documents = 0usize;
    let mut node_count = 0usize;
    let mut diagnostics = Vec::new();

    for event in Parser::new_from_str(text) {
        let (event, raw_span) = match event {
            Ok(pair) => pair,
            Err(error) => {
                let marker = error.marker();
                let start = positions.byte(marker.index());
                let span = Span {
                    start,
                    end: start,
                    line: u32::try_from(marker.line()).unwrap_or(u32::MAX),
                    col: u32::try_from(marker.col() + 1).unwrap_or(u32::MAX),
                };
                let span = positions.within_content(span);
                // The scanner's own depth limit for `[[[…` is a limit, not
                // a syntax error: the same code as our block-nesting limit.
                let diagnostic = if error.info().contains("recursion limit") {
                    Diagnostic::error(
                        Code::YamlLimits,
                        span,
                        format!("YAML nested too deeply: {}", error.info()),
                    )
                    .with_label("here")
                } else {
                    syntax_error(text, span, error.info())
                };
                diagnostics.push(diagnostic);
                return Err(diagnostics);
            }
        };
        let span = positions.span(&raw_span);
        let finished: Option<(Node, usize)> = match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing | Event::DocumentEnd => None,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    diagnostics.push(
                        Diagnostic::error(
                            Code::MultipleDocuments,
                            span,
                            "a runbook file holds exactly one YAML document".to_string(),
                        )
                        .with_label("second document starts here")
                        .with_help("move each runbook into its own file"),
                    );
                    return Err(diagnostics);
                }
                None
            }
            Event::Alias(id) => match anchors.get(&id) {
                Some((node, size)) => {
                    node_count = node_count.saturating_add(size.nodes);
                    aliased.nodes = aliased.nodes.saturating_add(size.nodes);
                    aliased.bytes = aliased.bytes.saturating_add(size.bytes);
                    if aliased.nodes > MAX_ALIAS_NODES || aliased.bytes > MAX_ALIAS_BYTES {
                        diagnostics.push(
                            Diagnostic::error(
                                Code::YamlLimits,
                                span,
                                format!(
                                    "aliases expand this document past {MAX_ALIAS_NODES} nodes or {} MiB of text",
                                    MAX_ALIAS_BYTES >> 20
                                ),
                            )
                            .with_label("this alias")
                            .with_help("runbooks do not need alias chains this large; write the values out"),
                        );
                        return Err(diagnostics);
                    }
                    let mut copy = node.clone();
                    // The copy keeps the anchored value but points at the alias,
                    // so diagnostics about it land where the author used it.
                    copy.span = span;
                    Some((copy, 0))
                }
                None => {
                    diagnostics.push(
                        Diagnostic::error(
                            Code::YamlSyntax,
                            span,
                            "alias to an unknown anchor".to_string(),
                        )
                        .with_label("unknown anchor"),
                    );
                    return Err(diagnostics);
                }
            },
            Event::Scalar(text_value, style, anchor, tag) => {
                node_count += 1;
                let tag = tag.map(|t| format!("{}{}", t.handle, t.suffix));
                match resolve_scalar(&text_value, style, tag.as_deref()) {
                    Ok(value) => {
                        let kind = match style {
                            ScalarStyle::Plain => ScalarKind::Plain,
                            ScalarStyle::SingleQuoted => ScalarKind::SingleQuoted,
                            ScalarStyle::DoubleQuoted => ScalarKind::DoubleQuoted,
                            ScalarStyle::Literal => ScalarKind::Literal,
                            ScalarStyle::Folded => ScalarKind::Folded,
                        };
                        Some((
                            Node {
                                value,
                                span,
                                style: Some(kind),
                            },
                            anchor,
                        ))
                    }
                    Err(message) => {
                        diagnostics.push(
                            Diagnostic::error(Code::YamlSyntax, span, message)
                                .with_label("this value"),
                        );
                        // Read as if untagged, so that the checks after
                        // this one judge the value written, not a null.
                        let value = resolve_scalar(&text_value, style, None).unwrap_or(Value::Null);
                        Some((
                            Node {
                                value,
                                span,
                                style: Some(ScalarKind::Plain),
                            },
                            anchor,
                        ))
                    }
                }
            }
            Event::SequenceStart(anchor, ref tag) | Event::MappingStart(anchor, ref tag) => {
                node_count += 1;
                let standard = if matches!(event, Event::SequenceStart(..)) {
                    "seq"
                } else {
                    "map"
                };
                if let Some(tag) = tag {
                    let written = format!("{}{}", tag.handle, tag.suffix);
                    let shown = match written.strip_prefix("tag:yaml.org,2002:") {
                        Some(core) if core == standard => None,
                        Some(core) => Some(format!("!!{core}")),
                        None => Some(written),
                    };
                    // Reported as a tagged scalar is; the node is read as
                    // if untagged.
                    if let Some(shown) = shown {
                        diagnostics.push(
                            Diagnostic::error(
                                Code::YamlSyntax,
                                span,
                                format!("unsupported YAML tag `{shown}`"),
                            )
                            .with_label("this value"),
                        );
                    }
                }
                if stack.len() >= MAX_DEPTH {
                    diagnostics.push(
                        Diagnostic::error(
                            Code::YamlLimits,
                            span,
                            format!("YAML nested deeper than {MAX_DEPTH} levels"),
                        )
                        .with_label("too deep here"),
                    );
                    return Err(diagnostics);
                }
                if matches!(event, Event::SequenceStart(..)) {
                    stack.push(Frame::Seq {
                        items: Vec::new(),
                        span,
                        anchor,
                    });
                } else {
                    stack.push(Frame::Map {
                        entries: Vec::new(),
                        index: None,
                        pending_key: None,
                        span,
                        anchor,
                    });
                }
                None
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Frame::Seq {
                    items,
                    span: start,
                    anchor,
                }) => Some((
                    Node {
                        value: Value::Seq(items),
                        span: start.to(span),
                        style: None,
                    },
                    anchor,
                )),
                Some(Frame::Map {
                    entries,
                    span: start,
                    anchor,
                    ..
                }) => Some((
                    Node {
                        value: Value::Map(entries),
                        span: start.to(span),
                        style: None,
                    },
                    anchor,
                )),
                None => None,
            },
        };
        if node_count > MAX_NODES {
            diagnostics.push(
                Diagnostic::error(
                    Code::YamlLimits,
                    span,
                    format!("document has more than {MAX_NODES} nodes"),
                )
                .with_label("limit reached here"),
            );
            return Err(diagnostics);
        }
        let Some((node, anchor)) = finished else {
            continue;
        };
        if anchor != 0 {
            let size = measure(&node);
            anchors.insert(anchor, (node.clone(), size));
        }
        // Step maps sit at depth 2 under `steps`, `on_failure` or `finally`;
        // a repeated key there is a repeated step id, and says so.
        let in_step_map = stack.len() == 2
            && matches!(&stack[0], Frame::Map { pending_key: Some((Some(k), _)), .. }
                if matches!(k.as_str(), "steps" | "on_failure" | "finally"));
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                index,
                pending_key,
                ..
            }) => match pending_key.take() {
                None => match key_text(&node, text) {
                    Some(key) => *pending_key = Some((Some(key), node.span)),
                    None if unquoted_template(&node, text).is_some() => {
                        if let Some((span, written)) = unquoted_template(&node, text) {
                            let mut d = Diagnostic::error(
                                Code::WrongType,
                                span,
                                format!(
                                    "`{written}` is an unquoted template: YAML reads a value that starts with `{{{{` as a mapping"
                                ),
                            )
                            .with_label("read as a mapping");
                            d.help = Some(quoting_hint(&node, text, &written));
                            diagnostics.push(d);
                        }
                        *pending_key = Some((None, node.span));
                    }
                    None => {
                        diagnostics.push(
                            Diagnostic::error(
                                Code::WrongType,
                                node.span,
                                format!(
                                    "mapping keys must be plain text, found {}",
                                    node.type_name()
                                ),
                            )
                            .with_label("complex key"),
                        );
                        // Keep parsing with a placeholder so later problems are still found.
                        *pending_key = Some((None, node.span));
                    }
                },
                Some((None, _)) => {}
                Some((Some(key), key_span)) => {
                    if index.is_none() && entries.len() >= INDEXED_MAP_LEN {
                        *index = Some(
                            entries
                                .iter()
                                .enumerate()
                                .map(|(i, e)| (e.key.clone(), i))
                                .collect(),
                        );
                    }
                    let earlier = match index {
                        Some(index) => index.get(&key).map(|&i| &entries[i]),
                        None => entries.iter().find(|e| e.key == key),
                    };
                    if let Some(first) = earlier {
                        let what = if in_step_map { "step id" } else { "key" };
                        diagnostics.push(
                            Diagnostic::error(
                                if in_step_map { Code::DuplicateStepId } else { Code::DuplicateKey },
                                key_span,
                                format!("duplicate {what} `{key}` (first defined on line {})", first.key_span.line),
                            )
                            .with_label("second occurrence")
                            .with_help(if in_step_map {
                                "step ids must be unique across `steps`, `on_failure` and `finally`; rename one"
                            } else {
                                "each key may appear once in a mapping; remove or rename one"
                            }),
                        );
                    } else {
                        if let Some(index) = index {
                            index.insert(key.clone(), entries.len());
                        }
                        entries.push(Entry {
                            key,
                            key_span,
                            value: node,
                        });
                    }
                }
            },
        }
    }
    let root = root.unwrap_or(Node {
        value: Value::Null,
        span: Span {
            start: 0,
            end: 0,
            line: 1,
            col: 1,
        },
        style: None,
    });
    Ok(Parsed { root, diagnostics })
}

/// What a copy of a node costs: its nodes and the bytes of its text.
#[derive(Clone, Copy, Debug, Default)]
struct Measure {
    nodes: usize,
    bytes: usize,
}

fn measure(node: &Node) -> Measure {
    let mut total = Measure { nodes: 1, bytes: 0 };
    let mut add = |part: Measure| {
        total.nodes = total.nodes.saturating_add(part.nodes);
        total.bytes = total.bytes.saturating_add(part.bytes);
    };
    match &node.value {
        Value::Seq(items) => items.iter().for_each(|item| add(measure(item))),
        Value::Map(entries) => entries.iter().for_each(|e| {
            add(Measure {
                nodes: 0,
                bytes: e.key.len(),
            });
            add(measure(&e.value));
        }),
        Value::Str(text) => add(Measure {
            nodes: 0,
            bytes: text.len(),
        }),
        _ => {}
    }
    total
}

/// A scalar's text as the author wrote it in `source`, the text the node
/// was parsed from: a plain `1.10` resolves to the number 1.1, but read as
/// text it is `1.10`. Only a number or boolean written plain on one line
/// is taken as written (after its anchor or tag); text, an alias, or a
/// value folded over lines is the value YAML read.
pub fn written_text(node: &Node, source: &str) -> String {
    let resolved = match &node.value {
        Value::Str(s) => return s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null | Value::Seq(_) | Value::Map(_) => return String::new(),
    };
    let Some(written) = (node.style == Some(ScalarKind::Plain))
        .then(|| source.get(node.span.start..node.span.end))
        .flatten()
        .filter(|w| !w.contains(['\n', '\r']) && !w.starts_with('*'))
    else {
        return resolved;
    };
    // `&anchor` and `!!tag` come before the value itself.
    let mut rest = written.trim();
    while rest.starts_with(['&', '!']) {
        rest = rest
            .split_once(char::is_whitespace)
            .map_or("", |(_, after)| after.trim_start());
    }
    if rest.is_empty() {
        resolved
    } else {
        rest.to_string()
    }
}

/// A key's text. A plain key that does not resolve to a string keeps what
/// was written: `~` or an empty key is not the id `null`, and `.inf` is not
/// `inf`, so the name rules judge the key the author sees.
/// How to quote the value that starts with the unquoted template
/// `written`: the rest of its line too (`{{params.base}}/health`), in
/// single quotes unless it holds one (a template's own `"none"`).
fn quoting_hint(node: &Node, source: &str, written: &str) -> String {
    let start = node.span.start.saturating_sub(1);
    let line = source
        .get(start..)
        .and_then(|rest| rest.lines().next())
        .unwrap_or(written);
    // A comment ends the value; a flow collection's `,` or `}` may too, but
    // a template's own text is the common case.
    let value = line.split(" #").next().unwrap_or(line).trim_end();
    let value = if value.len() < written.len() {
        written
    } else {
        value
    };
    if value.contains('\'') {
        format!(
            "put the whole value in double quotes, its own `\"` written `\\\"`: \"{}\"",
            value.replace('\\', "\\\\").replace('"', "\\\"")
        )
    } else {
        format!("put the whole value in quotes: '{value}'")
    }
}

/// For a mapping used as a key right after a `{` (`{{params.x}}`, a
/// template written without quotes): the span of the whole `{{…}}` and its
/// text.
fn unquoted_template(node: &Node, source: &str) -> Option<(Span, String)> {
    if !matches!(node.value, Value::Map(_)) || node.span.start == 0 || node.span.col < 2 {
        return None;
    }
    let start = node.span.start - 1;
    let rest = source.get(start..)?;
    if !rest.starts_with("{{") {
        return None;
    }
    let end = start + rest.find("}}")? + 2;
    let written = source.get(start..end)?;
    if written.contains('\n') {
        return None;
    }
    Some((
        Span {
            start,
            end,
            line: node.span.line,
            col: node.span.col - 1,
        },
        written.to_string(),
    ))
}

fn key_text(node: &Node, source: &str) -> Option<String> {
    match &node.value {
        Value::Str(s) => Some(s.clone()),
        Value::Seq(_) | Value::Map(_) => None,
        resolved => {
            let written = (node.style == Some(ScalarKind::Plain))
                .then(|| source.get(node.span.start..node.span.end))
                .flatten();
            Some(match (written, resolved) {
                (Some(written), _) => written.trim_end().to_string(),
                (None, Value::Int(i)) => i.to_string(),
                (None, Value::Bool(b)) => b.to_string(),
                (None, Value::Float(f)) => f.to_string(),
                (None, _) => "null".to_string(),
            })
        }
    }
}

/// Resolves a scalar with the YAML 1.2 core schema (so `yes` stays a string,
/// unlike YAML 1.1), honouring the standard `!!` tags.
fn resolve_scalar(text: &str, style: ScalarStyle, tag: Option<&str>) -> Result<Value, String> {
    // The parser hands `!!int` over resolved, as `tag:yaml.org,2002:int`.
    let tag = tag.map(|t| match t.strip_prefix("tag:yaml.org,2002:") {
        Some(core) => format!("!!{core}"),
        None => t.to_string(),
    });
    match tag.as_deref() {
        Some("!!str") => return Ok(Value::Str(text.to_string())),
        Some("!!int") => {
            return parse_int(text)
                .map(Value::Int)
                .ok_or_else(|| format!("`{text}` is not an integer"));
        }
        Some("!!float") => {
            return parse_float(text)
                .map(Value::Float)
                .ok_or_else(|| format!("`{text}` is not a number"));
        }
        Some("!!bool") => {
            return parse_bool(text)
                .map(Value::Bool)
                .ok_or_else(|| format!("`{text}` is not a boolean"));
        }
        Some("!!null") => return Ok(Value::Null),
        Some(other) => return Err(format!("unsupported YAML tag `{other}`")),
        None => {}
    }
    if style != ScalarStyle::Plain {
        return Ok(Value::Str(text.to_string()));
    }
    if matches!(text, "" | "~" | "null" | "Null" | "NULL") {
        return Ok(Value::Null);
    }
    if let Some(b) = parse_bool(text) {
        return Ok(Value::Bool(b));
    }
    if let Some(i) = parse_int(text) {
        return Ok(Value::Int(i));
    }
    if let Some(f) = parse_float(text) {
        return Ok(Value::Float(f));
    }
    Ok(Value::Str(text.to_string()))
}

fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

fn parse_int(text: &str) -> Option<i64> {
    if let Some(hex) = text.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok();
    }
    if let Some(oct) = text.strip_prefix("0o") {
        return i64::from_str_radix(oct, 8).ok();
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn parse_float(text: &str) -> Option<f64> {
    match text {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        _ => {}
    }
    // YAML's float grammar is narrower than Rust's: no `inf`, `nan` or `1e5.`
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let looks_numeric = body.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && body
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
        && body.bytes().any(|b| b.is_ascii_digit());
    if !looks_numeric {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_key_is_a_key() {
        // `expect.json` uses `""` for the whole document (RFC 6901); it was
        // once dropped like the placeholder of a complex key.
        let parsed = parse("json: {\"\": ok, [a]: 1}\n").expect("valid yaml");
        let json = parsed.root.get("json").expect("json");
        assert_eq!(json.get("").and_then(Node::as_str), Some("ok"));
        let Value::Map(entries) = &json.value else {
            panic!("json is a mapping")
        };
        assert_eq!(entries.len(), 1, "the complex key is dropped");
        assert_eq!(parsed.diagnostics.len(), 1, "the complex key is reported");
    }

    #[test]
    fn spans_point_at_values() {
        let node = parse("a: 1\nb:\n  - x\n  - 'y'\n")
            .expect("valid yaml")
            .root;
        let b = node.get("b").expect("b");
        let Value::Seq(items) = &b.value else {
            panic!("b is a list")
        };
        assert_eq!((items[1].span.line, items[1].span.col), (4, 5));
        assert_eq!(items[1].as_str(), Some("y"));
    }

    #[test]
    fn core_schema_resolution() {
        let node = parse("a: yes\nb: 0x1F\nc: 1.5\nd: ~\ne: '1'\nf: True")
            .expect("valid")
            .root;
        assert_eq!(
            node.get("a").map(|n| &n.value),
            Some(&Value::Str("yes".into()))
        );
        assert_eq!(node.get("b").map(|n| &n.value), Some(&Value::Int(31)));
        assert_eq!(node.get("c").map(|n| &n.value), Some(&Value::Float(1.5)));
        assert_eq!(node.get("d").map(|n| &n.value), Some(&Value::Null));
        assert_eq!(
            node.get("e").map(|n| &n.value),
            Some(&Value::Str("1".into()))
        );
        assert_eq!(node.get("f").map(|n| &n.value), Some(&Value::Bool(true)));
    }

    #[test]
    fn standard_tags_decide_the_type() {
        let parsed =
            parse("a: !!int '2'\nb: !!str 2\nc: !!bool true\nd: !!float 1\ne: !!null ''\nf: !x 1")
                .expect("recoverable");
        let node = &parsed.root;
        assert_eq!(node.get("a").map(|n| &n.value), Some(&Value::Int(2)));
        assert_eq!(
            node.get("b").map(|n| &n.value),
            Some(&Value::Str("2".into()))
        );
        assert_eq!(node.get("c").map(|n| &n.value), Some(&Value::Bool(true)));
        assert_eq!(node.get("d").map(|n| &n.value), Some(&Value::Float(1.0)));
        assert_eq!(node.get("e").map(|n| &n.value), Some(&Value::Null));
        assert_eq!(parsed.diagnostics.len(), 1, "{:?}", parsed.diagnostics);
        assert!(parsed.diagnostics[0].message.contains("`!x`"));
        // An unknown tag is reported once; the value is read as written.
        assert_eq!(node.get("f").map(|n| &n.value), Some(&Value::Int(1)));
    }

    #[test]
    fn a_tag_on_a_mapping_or_a_list_is_reported_like_one_on_a_scalar() {
        let parsed = parse(
            "a: !foo {type: shell}\nb: !bar []\nc: !!binary {x: 1}\nd: !!map {x: 1}\ne: !!seq [1]\n",
        )
        .expect("recoverable");
        let messages: Vec<(u32, &str)> = parsed
            .diagnostics
            .iter()
            .map(|d| (d.span.line, d.message.as_str()))
            .collect();
        assert_eq!(
            messages,
            [
                (1, "unsupported YAML tag `!foo`"),
                (2, "unsupported YAML tag `!bar`"),
                (3, "unsupported YAML tag `!!binary`"),
            ]
        );
        // Read as written.
        assert!(matches!(
            parsed.root.get("a").map(|n| &n.value),
            Some(Value::Map(_))
        ));
    }

    #[test]
    fn duplicate_keys_are_reported_at_second() {
        let parsed = parse("a: 1\nb: 2\na: 3\n").expect("recoverable");
        assert_eq!(parsed.diagnostics[0].span.line, 3);
        assert_eq!(parsed.root.get("a").map(|n| &n.value), Some(&Value::Int(1)));
    }

    #[test]
    fn duplicate_keys_are_found_in_large_mappings() {
        // Past INDEXED_MAP_LEN entries the check uses the hash index; it
        // must still name the first occurrence and keep the first value.
        let mut doc: String = (0..100).map(|i| format!("k{i}: {i}\n")).collect();
        doc.push_str("k3: dup\nk99: dup\nk100: 100\n");
        let parsed = parse(&doc).expect("recoverable");
        let lines: Vec<u32> = parsed.diagnostics.iter().map(|d| d.span.line).collect();
        assert_eq!(lines, [101, 102]);
        assert!(
            parsed.diagnostics[0]
                .message
                .contains("first defined on line 4"),
            "{}",
            parsed.diagnostics[0].message
        );
        assert_eq!(
            parsed.root.get("k3").map(|n| &n.value),
            Some(&Value::Int(3))
        );
        assert_eq!(
            parsed.root.get("k100").map(|n| &n.value),
            Some(&Value::Int(100))
        );
    }

    #[test]
    fn billion_laughs_is_bounded() {
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let prev = i - 1;
            doc.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        let errors = parse(&doc).expect_err("too big");
        assert_eq!(errors[0].code, Code::YamlLimits);
    }

    /// Few nodes, each a long string: bounded by the bytes the aliases
    /// copy, not only by their nodes.
    #[test]
    fn aliases_of_long_strings_are_bounded() {
        let mut doc = format!("a0: &a0 \"{}\"\n", "x".repeat(300));
        for i in 1..6 {
            let prev = i - 1;
            let copies = vec![format!("*a{prev}"); 9].join(", ");
            doc.push_str(&format!("a{i}: &a{i} [{copies}]\n"));
        }
        let errors = parse(&doc).expect_err("too much text");
        assert_eq!(errors[0].code, Code::YamlLimits);
        assert!(errors[0].message.contains("MiB of text"), "{errors:?}");
        // A shared block used a few times is fine.
        let shared = "env: &env {A: \"1\", B: \"2\"}\none: *env\ntwo: *env\n";
        assert!(parse(shared).is_ok());
    }

    #[test]
    fn deep_nesting_is_bounded() {
        // The scanner has its own recursion limit for flow collections; ours
        // catches block nesting. Either way the document is refused.
        let errors = parse(&"[".repeat(10_000)).expect_err("too deep");
        assert_eq!(errors[0].code, Code::YamlLimits, "{errors:?}");
        let mut block = String::new();
        for depth in 0..300 {
            block.push_str(&" ".repeat(depth));
            block.push_str("a:\n");
        }
        let errors = parse(&block).expect_err("too deep");
        assert_eq!(errors[0].code, Code::YamlLimits);
    }

    #[test]
    fn non_ascii_offsets_are_bytes() {
        let text = "é: ü\nb: x\n";
        let node = parse(text).expect("valid").root;
        let b = node.get("b").expect("b");
        assert_eq!(&text[b.span.start..b.span.end], "x");
    }

    /// The end of the input is shown at the end of the last line with
    /// text, with or without line breaks after it, never on a line past it.
    #[test]
    fn the_end_of_the_input_is_on_the_last_line() {
        for text in ["---", "---\n", "---\n\n", "---\r\n"] {
            let root = parse(text).expect("valid").root;
            assert_eq!(
                (root.span.line, root.span.col, root.span.start),
                (1, 4, 3),
                "{text:?}"
            );
        }
        let errors = parse("a:\n  b: [1,\n").expect_err("unclosed");
        assert_eq!((errors[0].span.line, errors[0].span.col), (2, 9));
    }
}
