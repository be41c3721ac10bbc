//! Quoting each `{{expr}}` insertion of a shell script for the place it
//! lands in.
//!
//! A value wrapped in single quotes is one inert word only where the shell
//! reads quotes as quotes. Inside `"…"` the single quotes are plain
//! characters and `$(…)` in the value runs; inside a comment a newline in the
//! value ends the comment and the rest runs; in a here-document a line equal
//! to the delimiter ends it early. So a script is rendered with every escaped
//! value replaced by a marker, then read once the way a POSIX shell (and
//! bash) tokenizes it, and each marker is replaced by the value written for
//! its context:
//!
//! | context | written as |
//! |---|---|
//! | unquoted, `${…}` outside double quotes | one single-quoted word |
//! | `"…"`, unquoted here-document | `\` before `\ $ \` "` |
//! | `"${…}"` (no `'` in the value) | `\` before `\ $ \` " }` |
//! | `'…'` | `'` written as `'\''` |
//! | `$'…'` | `\` before `\` and `'` |
//! | quoted here-document (`<<'EOF'`) | as is |
//! | comment | line breaks turned into spaces |
//! | `$((…))` | only an integer, as is |
//!
//! Places with no safe spelling are refused, so the step fails before
//! anything runs: right after a backslash, inside backticks, inside a
//! here-document's delimiter, a non-integer in arithmetic, and a value that
//! would put a here-document's delimiter on a line of its own.

/// Starts a marker; the value's index and [`MARK_CLOSE`] follow. Private-use
/// code points, which a script has no reason to contain.
pub const MARK_OPEN: char = '\u{E000}';
/// Ends a marker.
pub const MARK_CLOSE: char = '\u{E001}';

/// `value` as exactly one inert shell word, in bash and in dash alike.
///
/// Left bare only when every character is an ASCII letter or digit or one
/// of `_ - / : @`. `shell_words` also leaves `{ } , . + ^ = %` bare, but
/// bash reads `{a,b}` as two words, `.` or `+` after `=~` as a pattern, a
/// word holding `=` at the start of a command as an assignment
/// (`LD_PRELOAD=/x.so`), and `%` inside `${V%…}` as part of the operator.
pub fn quote_word(value: &str) -> String {
    // A reserved word at a command's start is syntax (`if`, `time`), and
    // inside `[[ ]]` a leading `-` makes an operator (`-n`); quoted, each
    // is only text, and a command reads `'-n'` as it reads `-n`.
    if RESERVED_WORDS.contains(&value) || value.starts_with('-') {
        return quoted_unless(value, |_| false);
    }
    quoted_unless(value, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '/' | ':' | '@')
    })
}

/// The words bash and dash read as syntax where a command starts.
const RESERVED_WORDS: &[&str] = &[
    "if", "then", "else", "elif", "fi", "case", "esac", "for", "select", "while", "until", "do",
    "done", "in", "function", "time", "coproc",
];

/// `value` single-quoted unless it is non-empty and every character is
/// `bare`.
fn quoted_unless(value: &str, bare: impl Fn(char) -> bool) -> String {
    if !value.is_empty() && value.chars().all(bare) {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

/// Checks a shell `run` template before any value exists: each `{{expr}}`
/// gets a neutral value (`0`), raw `{{{ }}}` insertions and block tags are
/// left out (both branches of an `{{#if}}` are read one after the other),
/// and the script is read as at run time. This finds the places that
/// refuse every value (backticks, right after a backslash, a
/// here-document's delimiter); the error gives the expression as written.
pub fn check_template(source: &str) -> Result<(), Refused> {
    if !source.contains("{{") {
        return Ok(());
    }
    let mut probe = String::with_capacity(source.len());
    let mut expressions: Vec<&str> = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find("{{") {
        let before = &rest[..at];
        let backslashes = before.len() - before.trim_end_matches('\\').len();
        if backslashes == 1 {
            // `\{{` is Handlebars' escape for a literal `{{`.
            probe.push_str(&before[..before.len() - 1]);
            probe.push_str("{{");
            rest = &rest[at + 2..];
            continue;
        }
        // Before more than one, Handlebars (handlebars-rust) drops one
        // backslash and renders the expression: `\\\{{x}}` is `\\` and x.
        probe.push_str(&before[..before.len() - usize::from(backslashes > 1)]);
        let tail = &rest[at..];
        let (close, raw) = if tail.starts_with("{{{") {
            ("}}}", true)
        } else {
            ("}}", false)
        };
        let Some(end) = tail.find(close) else {
            // Unclosed: a syntax error, reported on its own.
            return Ok(());
        };
        let expression = &tail[..end + close.len()];
        rest = &tail[end + close.len()..];
        let inner = expression
            .trim_matches(|c| c == '{' || c == '}')
            .trim_matches('~')
            .trim();
        let tag = inner.starts_with(['#', '/', '^', '!', '>'])
            || inner == "else"
            || inner.starts_with("else ");
        if raw || tag {
            continue;
        }
        probe.push(MARK_OPEN);
        probe.push_str(&expressions.len().to_string());
        probe.push(MARK_CLOSE);
        expressions.push(expression);
    }
    probe.push_str(rest);
    let values = vec!["0".to_string(); expressions.len()];
    match place(&probe, &values) {
        Ok(_) => Ok(()),
        Err(refusal) => {
            let found = refusal.value.and_then(|i| expressions.get(i));
            Err(Refused {
                expression: found.map_or_else(String::new, |e| (*e).to_string()),
                // The same text can also stand earlier, as an escaped `\{{`
                // or an earlier insertion that is fine where it is.
                occurrence: found.map_or(0, |e| {
                    let at = e.as_ptr() as usize - source.as_ptr() as usize;
                    source[..at].matches(*e).count()
                }),
                why: refusal.message,
            })
        }
    }
}

/// A place in a `run` template that refuses every value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The insertion as written (`{{params.x}}`); empty when no single
    /// insertion is at fault.
    pub expression: String,
    /// Which appearance of `expression` in the template's text it is,
    /// counting from 0.
    pub occurrence: usize,
    /// Why no value can go there.
    pub why: String,
}

#[derive(Debug, Clone, Copy)]
enum Item<'v> {
    Char(char),
    /// A value and its index.
    Value(&'v str, usize),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Frame {
    /// Top level, or inside `$(…)` (`parens` counts open `(`, `cases` open
    /// `case` words, whose patterns end in an unmatched `)`).
    Command {
        parens: u32,
        cases: u32,
    },
    Double,
    Single,
    AnsiC,
    /// `${…}`; `double` when the expansion is inside double quotes;
    /// `start`, where its text begins in the output (after `${`), to tell
    /// the name from the operator when a value lands in it.
    Brace {
        double: bool,
        start: usize,
    },
    /// Arithmetic: `$(( ))`, bash's `(( ))` command (`command`), or
    /// `$[ ]` (`square`).
    Arith {
        parens: u32,
        square: bool,
        command: bool,
    },
    /// An array subscript, `a[…]` or `${a[…]}`, which bash evaluates as
    /// arithmetic for an indexed array.
    Subscript,
    Backtick,
    Comment,
}

struct Heredoc {
    delimiter: String,
    quoted: bool,
    strip_tabs: bool,
}

/// Why a value could not be placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The index (in `values`) of the value refused, when one was.
    pub value: Option<usize>,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Replaces every marker of `rendered` (`MARK_OPEN`, the index of a value
/// of `values`, `MARK_CLOSE`) with that value, quoted for where it stands.
pub fn place(rendered: &str, values: &[String]) -> Result<String, Refusal> {
    let items = items(rendered, values).map_err(|message| Refusal {
        value: None,
        message,
    })?;
    let mut lexer = Lexer {
        items: &items,
        pos: 0,
        out: String::with_capacity(rendered.len()),
        stack: vec![Frame::Command {
            parens: 0,
            cases: 0,
        }],
        pending: Vec::new(),
        word_start: true,
        word: String::new(),
        current: None,
        shift_in_arith_command: false,
    };
    match lexer.run() {
        Ok(()) => Ok(lexer.out),
        Err(message) => Err(Refusal {
            value: lexer.current,
            message,
        }),
    }
}

fn items<'v>(rendered: &str, values: &'v [String]) -> Result<Vec<Item<'v>>, String> {
    let mut items = Vec::with_capacity(rendered.len());
    let mut chars = rendered.chars();
    while let Some(c) = chars.next() {
        if c == MARK_CLOSE {
            return Err(reserved());
        }
        if c != MARK_OPEN {
            items.push(Item::Char(c));
            continue;
        }
        let mut index = String::new();
        loop {
            match chars.next() {
                Some(MARK_CLOSE) => break,
                Some(d) if d.is_ascii_digit() => index.push(d),
                _ => return Err(reserved()),
            }
        }
        let index = index.parse::<usize>().map_err(|_| reserved())?;
        let value = values.get(index).ok_or_else(reserved)?;
        items.push(Item::Value(value, index));
    }
    Ok(items)
}

fn reserved() -> String {
    "the script contains the reserved characters U+E000/U+E001".to_string()
}

struct Lexer<'a, 'v> {
    items: &'a [Item<'v>],
    pos: usize,
    out: String,
    stack: Vec<Frame>,
    pending: Vec<Heredoc>,
    /// At the start of a word (where `#` starts a comment).
    word_start: bool,
    /// The current unquoted word, for `case`/`esac`.
    word: String,
    /// The index of the value being placed (or just before the failure).
    current: Option<usize>,
    /// A `<<` was seen inside a `(( ))` command (see [`Frame::Arith`]).
    shift_in_arith_command: bool,
}

impl<'v> Lexer<'_, 'v> {
    fn top(&self) -> Frame {
        self.stack.last().copied().unwrap_or(Frame::Command {
            parens: 0,
            cases: 0,
        })
    }

    fn set_top(&mut self, frame: Frame) {
        if let Some(top) = self.stack.last_mut() {
            *top = frame;
        }
    }

    fn pop(&mut self) {
        if self.stack.len() > 1 {
            self.stack.pop();
        }
    }

    fn peek(&self, ahead: usize) -> Option<Item<'v>> {
        self.items.get(self.pos + ahead).copied()
    }

    fn peek_char(&self, ahead: usize) -> Option<char> {
        match self.peek(ahead) {
            Some(Item::Char(c)) => Some(c),
            _ => None,
        }
    }

    fn run(&mut self) -> Result<(), String> {
        while let Some(item) = self.peek(0) {
            match item {
                Item::Value(value, index) => {
                    self.current = Some(index);
                    let value = value.to_string();
                    self.insert(&value)?;
                    self.pos += 1;
                    self.word_start = false;
                    self.word.clear();
                }
                Item::Char(c) => self.char(c)?,
            }
        }
        Ok(())
    }

    /// Copies a backslash and the character it escapes.
    fn escaped(&mut self) -> Result<(), String> {
        self.out.push('\\');
        match self.peek(1) {
            Some(Item::Char(next)) => {
                self.out.push(next);
                self.pos += 2;
                Ok(())
            }
            Some(Item::Value(_, index)) => {
                self.current = Some(index);
                Err(
                    "a `{{ }}` insertion right after a backslash has no safe quoting; remove the backslash"
                        .to_string(),
                )
            }
            None => {
                self.pos += 1;
                Ok(())
            }
        }
    }

    /// `$` followed by `(`, `((`, `{`, `[` or (outside double quotes) `'`.
    fn dollar(&mut self, in_double: bool) -> Result<(), String> {
        if let Some(Item::Value(_, index)) = self.peek(1) {
            self.current = Some(index);
            return Err(DOLLAR_BEFORE_VALUE.to_string());
        }
        match (self.peek_char(1), self.peek_char(2)) {
            (Some('('), Some('(')) => {
                self.out.push_str("$((");
                self.pos += 3;
                self.stack.push(Frame::Arith {
                    parens: 0,
                    square: false,
                    command: false,
                });
            }
            (Some('('), _) => {
                self.out.push_str("$(");
                self.pos += 2;
                self.stack.push(Frame::Command {
                    parens: 0,
                    cases: 0,
                });
                self.word_start = true;
            }
            (Some('{'), _) => {
                self.out.push_str("${");
                self.pos += 2;
                self.stack.push(Frame::Brace {
                    double: in_double,
                    start: self.out.len(),
                });
            }
            (Some('['), _) => {
                self.out.push_str("$[");
                self.pos += 2;
                self.stack.push(Frame::Arith {
                    parens: 0,
                    square: true,
                    command: false,
                });
            }
            (Some('\''), _) if !in_double => {
                self.out.push_str("$'");
                self.pos += 2;
                self.stack.push(Frame::AnsiC);
            }
            _ => {
                self.out.push('$');
                self.pos += 1;
            }
        }
        Ok(())
    }

    fn char(&mut self, c: char) -> Result<(), String> {
        match self.top() {
            Frame::Command { .. } => self.command_char(c)?,
            Frame::Brace { double, start } => match c {
                '[' if is_name(&self.out[start..]) => self.open(c, Frame::Subscript),
                '}' => {
                    self.out.push(c);
                    self.pos += 1;
                    self.pop();
                }
                '\\' => self.escaped()?,
                '"' => self.open(c, Frame::Double),
                '\'' if !double => self.open(c, Frame::Single),
                '`' => self.open(c, Frame::Backtick),
                '$' => self.dollar(double)?,
                _ => self.copy(c),
            },
            Frame::Double => match c {
                '"' => self.close(c),
                '\\' => self.escaped()?,
                '`' => self.open(c, Frame::Backtick),
                '$' => self.dollar(true)?,
                _ => self.copy(c),
            },
            Frame::Single => match c {
                '\'' => self.close(c),
                _ => self.copy(c),
            },
            Frame::AnsiC => match c {
                '\'' => self.close(c),
                '\\' => self.escaped()?,
                _ => self.copy(c),
            },
            Frame::Backtick => match c {
                '`' => self.close(c),
                '\\' => self.escaped()?,
                _ => self.copy(c),
            },
            Frame::Arith { square: true, .. } => match c {
                ']' => self.close(c),
                '$' => self.dollar(false)?,
                _ => self.copy(c),
            },
            Frame::Subscript => match c {
                ']' => self.close(c),
                '$' => self.dollar(false)?,
                '"' => self.open(c, Frame::Double),
                '\'' => self.open(c, Frame::Single),
                _ => self.copy(c),
            },
            Frame::Arith {
                parens,
                square,
                command,
            } => match c {
                '(' => {
                    self.set_top(Frame::Arith {
                        parens: parens + 1,
                        square,
                        command,
                    });
                    self.copy(c);
                }
                ')' if parens > 0 => {
                    self.set_top(Frame::Arith {
                        parens: parens - 1,
                        square,
                        command,
                    });
                    self.copy(c);
                }
                // dash has no `(( ))`: it reads two subshells, and `<<` in
                // them as a here-document whose body, the rest of the
                // script, no quoting can keep inert in both shells.
                '<' if command && self.peek_char(1) == Some('<') => {
                    self.shift_in_arith_command = true;
                    self.copy(c);
                }
                ')' => {
                    self.copy(c);
                    if self.peek_char(0) == Some(')') {
                        self.copy(')');
                    }
                    self.pop();
                }
                '$' => self.dollar(false)?,
                _ => self.copy(c),
            },
            Frame::Comment => {
                if c == '\n' {
                    self.pop();
                    // The line break belongs to the command level again:
                    // it may start here-document bodies.
                    return self.char(c);
                }
                self.copy(c);
            }
        }
        Ok(())
    }

    fn copy(&mut self, c: char) {
        self.out.push(c);
        self.pos += 1;
    }

    fn open(&mut self, c: char, frame: Frame) {
        self.copy(c);
        self.stack.push(frame);
        self.word_start = false;
    }

    fn close(&mut self, c: char) {
        self.copy(c);
        self.pop();
    }

    fn command_char(&mut self, c: char) -> Result<(), String> {
        match c {
            '\\' => {
                self.escaped()?;
                self.word_start = false;
            }
            '\'' => self.open(c, Frame::Single),
            '"' => self.open(c, Frame::Double),
            '`' => self.open(c, Frame::Backtick),
            '$' => {
                self.word_start = false;
                self.dollar(false)?;
            }
            '#' if self.word_start => {
                self.copy(c);
                self.stack.push(Frame::Comment);
            }
            // A here-string (`<<<`): its word is an ordinary word.
            '<' if self.peek_char(1) == Some('<') && self.peek_char(2) == Some('<') => {
                self.end_word();
                self.out.push_str("<<<");
                self.pos += 3;
                self.word_start = true;
            }
            '<' if self.peek_char(1) == Some('<') => {
                self.end_word();
                self.heredoc_operator()?;
            }
            // bash's arithmetic command, also in `for ((…))`: `<<` there is
            // a shift, and a value is a number, as in `$(( ))`.
            '(' if self.word_start && self.peek_char(1) == Some('(') => {
                self.end_word();
                self.out.push_str("((");
                self.pos += 2;
                self.stack.push(Frame::Arith {
                    parens: 0,
                    square: false,
                    command: true,
                });
            }
            '[' if !self.word_start && is_name(&self.word) => {
                self.word.clear();
                self.open(c, Frame::Subscript);
            }
            '(' | ')' => {
                self.end_word();
                let Frame::Command { parens, cases } = self.top() else {
                    return Ok(());
                };
                self.copy(c);
                self.word_start = true;
                match c {
                    '(' => self.set_top(Frame::Command {
                        parens: parens + 1,
                        cases,
                    }),
                    _ if parens > 0 => self.set_top(Frame::Command {
                        parens: parens - 1,
                        cases,
                    }),
                    // A `case` pattern's closing parenthesis.
                    _ if cases > 0 => {}
                    // The end of `$( )`.
                    _ => {
                        self.pop();
                        self.word_start = false;
                    }
                }
            }
            '\n' => {
                self.copy(c);
                self.end_word();
                self.word_start = true;
                if !self.pending.is_empty() {
                    self.heredoc_bodies()?;
                }
            }
            ' ' | '\t' | ';' | '&' | '|' | '<' | '>' => {
                self.copy(c);
                self.end_word();
                self.word_start = true;
            }
            _ => {
                self.copy(c);
                if c.is_alphanumeric() || c == '_' {
                    self.word.push(c);
                }
                self.word_start = false;
            }
        }
        Ok(())
    }

    /// Counts `case`/`esac` words: a `case` pattern's `)` does not close a
    /// `$(`.
    fn end_word(&mut self) {
        let word = std::mem::take(&mut self.word);
        if let Frame::Command { parens, cases } = self.top() {
            let cases = match word.as_str() {
                "case" => cases + 1,
                "esac" => cases.saturating_sub(1),
                _ => cases,
            };
            self.set_top(Frame::Command { parens, cases });
        }
    }

    /// `<<` or `<<-` and the delimiter word; its body starts after the line.
    fn heredoc_operator(&mut self) -> Result<(), String> {
        self.out.push_str("<<");
        self.pos += 2;
        let strip_tabs = self.peek_char(0) == Some('-');
        if strip_tabs {
            self.copy('-');
        }
        while let Some(c @ (' ' | '\t')) = self.peek_char(0) {
            self.copy(c);
        }
        let mut delimiter = String::new();
        let mut quoted = false;
        let mut quote: Option<char> = None;
        while let Some(item) = self.peek(0) {
            let Item::Char(c) = item else {
                if let Item::Value(_, index) = item {
                    self.current = Some(index);
                }
                return Err(
                    "a `{{ }}` insertion in a here-document's delimiter is not allowed".to_string(),
                );
            };
            match (quote, c) {
                (None, ' ' | '\t' | '\n' | ';' | '&' | '|' | '<' | '>' | '(' | ')') => break,
                (None, '\'' | '"') => {
                    quoted = true;
                    quote = Some(c);
                }
                (None, '\\') => {
                    quoted = true;
                    self.copy(c);
                    if let Some(next) = self.peek_char(0) {
                        delimiter.push(next);
                        self.copy(next);
                    }
                    continue;
                }
                (Some(q), c) if c == q => quote = None,
                _ => delimiter.push(c),
            }
            self.copy(c);
        }
        self.pending.push(Heredoc {
            delimiter,
            quoted,
            strip_tabs,
        });
        self.word_start = true;
        Ok(())
    }

    /// The bodies of the here-documents opened on the line just ended, in
    /// order; each ends at a line equal to its delimiter.
    fn heredoc_bodies(&mut self) -> Result<(), String> {
        for doc in std::mem::take(&mut self.pending) {
            // Frames of `$(` and backticks inside an unquoted body.
            let mut nested: Vec<Frame> = Vec::new();
            loop {
                let line_start = self.out.len();
                let mut had_value = false;
                let mut ended_line = false;
                while let Some(item) = self.peek(0) {
                    match item {
                        Item::Char('\n') => {
                            self.copy('\n');
                            ended_line = true;
                            break;
                        }
                        Item::Char(c) if doc.quoted => self.copy(c),
                        Item::Char(c) => self.heredoc_char(c, &mut nested)?,
                        Item::Value(value, index) => {
                            self.current = Some(index);
                            had_value = true;
                            let value = value.to_string();
                            if !nested.is_empty() {
                                return Err("a `{{ }}` insertion inside a command substitution in a here-document is not supported; assign it to a variable before the here-document".to_string());
                            }
                            let written = if doc.quoted {
                                value
                            } else {
                                escape_double(&value, false)
                            };
                            self.out.push_str(&written);
                            self.pos += 1;
                        }
                    }
                }
                let line = self.out[line_start..].trim_end_matches('\n');
                let ends = |l: &str| {
                    let l = if doc.strip_tabs {
                        l.trim_start_matches('\t')
                    } else {
                        l
                    };
                    l == doc.delimiter
                };
                if had_value {
                    if line.split('\n').any(ends) {
                        return Err(format!(
                            "a `{{{{ }}}}` value puts the here-document delimiter `{}` on a line of its own, which would end the here-document early",
                            doc.delimiter
                        ));
                    }
                } else if ends(line) {
                    break;
                }
                if !ended_line {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn heredoc_char(&mut self, c: char, nested: &mut Vec<Frame>) -> Result<(), String> {
        if let ('$', Some(Item::Value(_, index))) = (c, self.peek(1)) {
            self.current = Some(index);
            return Err(DOLLAR_BEFORE_VALUE.to_string());
        }
        match c {
            '\\' => self.escaped()?,
            '`' => {
                if nested.last() == Some(&Frame::Backtick) {
                    nested.pop();
                } else {
                    nested.push(Frame::Backtick);
                }
                self.copy(c);
            }
            '$' if self.peek_char(1) == Some('(') => {
                nested.push(Frame::Command {
                    parens: 0,
                    cases: 0,
                });
                self.out.push_str("$(");
                self.pos += 2;
            }
            '(' if !nested.is_empty() => {
                nested.push(Frame::Double);
                self.copy(c);
            }
            ')' if !nested.is_empty() => {
                nested.pop();
                self.copy(c);
            }
            _ => self.copy(c),
        }
        Ok(())
    }

    fn insert(&mut self, value: &str) -> Result<(), String> {
        if self.shift_in_arith_command {
            return Err("a `{{ }}` insertion after `<<` inside `(( ))` cannot be quoted for sh, which reads `((` as two subshells and `<<` as a here-document; write the shift as `x=$(( x << 2 ))`".to_string());
        }
        let written = match self.top() {
            // After a `~` that starts a word, a bare name would complete a
            // tilde prefix (`~root` is root's home).
            Frame::Command { .. } if self.out.ends_with('~') => quoted_unless(value, |_| false),
            Frame::Command { .. } => quote_word(value),
            Frame::Brace { double, start } => {
                let operator = brace_operator(&self.out[start..]);
                match operator {
                    BraceOperator::Word => {}
                    BraceOperator::Name => {
                        return Err("a `{{ }}` insertion cannot name the variable of `${…}`; use a fixed name".to_string());
                    }
                    BraceOperator::Offset => {
                        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                            return Err(format!(
                                "a `{{{{ }}}}` insertion in the offset of `${{…:…}}` must be a number of digits, got `{}`",
                                shown(value)
                            ));
                        }
                    }
                    BraceOperator::Pattern => {
                        let plain = |c: char| {
                            c.is_ascii_alphanumeric()
                                || matches!(c, '_' | '.' | '-' | ',' | '@' | ':' | '=')
                        };
                        if value.is_empty() || !value.chars().all(plain) {
                            return Err(format!(
                                "a `{{{{ }}}}` insertion in the pattern of `${{…#…}}`, `${{…%…}}` or `${{…/…}}` must be letters, digits and `_ . - , @ : =`, got `{}`; pass it through `env:` and write `\"${{f%\"$VAR\"}}\"`",
                                shown(value)
                            ));
                        }
                    }
                }
                if double {
                    // bash pairs single quotes even inside `"${…}"` (dash
                    // does not), so a lone `'` there has no spelling both
                    // read the same way.
                    if value.contains('\'') {
                        return Err("a value containing `'` cannot be quoted inside `\"${…}\"`; use `${…}` without the double quotes, or a variable".to_string());
                    }
                    escape_double(value, true).replace('}', r"\}")
                } else {
                    // Only letters, digits and `_` cannot join an operator.
                    quoted_unless(value, |c| c.is_ascii_alphanumeric() || c == '_')
                }
            }
            // bash brace-expands `{a,b}` inside `"${U:-"…"}"` (dash does
            // not, and reads `\{` as two characters): no spelling of `{`
            // reads the same in both.
            Frame::Double
                if value.contains('{')
                    && matches!(
                        self.stack.iter().rev().nth(1),
                        Some(Frame::Brace { double: true, .. })
                    ) =>
            {
                return Err("a value containing `{` cannot be quoted inside `\"${…\"…\"}\"` for both bash and dash; drop the inner double quotes".to_string());
            }
            Frame::Double => escape_double(value, true),
            Frame::Single => value.replace('\'', r"'\''"),
            // dash has no `$'…'`: there the text is a `$` and a single-quoted
            // string, where `\'` ends the quotes. Without `'` or `\` a value
            // reads the same in both.
            Frame::AnsiC if value.contains(['\'', '\\']) => {
                return Err("a value containing `'` or `\\` cannot be quoted inside `$'…'` for every shell (dash has no `$'…'`); use `'…'` or `\"…\"`".to_string());
            }
            Frame::AnsiC => value.to_string(),
            Frame::Subscript => {
                if value.is_empty() || !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    return Err(format!(
                        "a `{{{{ }}}}` insertion in an array subscript `[…]` must be letters, digits and `_` (bash evaluates it as arithmetic), got `{}`",
                        shown(value)
                    ));
                }
                value.to_string()
            }
            Frame::Comment => value.replace(['\n', '\r'], " "),
            Frame::Arith { .. } => {
                let digits = value.strip_prefix(['-', '+']).unwrap_or(value);
                let number = (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| value.parse::<i64>().ok())
                    .flatten();
                let Some(number) = number else {
                    return Err(format!(
                        "a `{{{{ }}}}` insertion in arithmetic (`$(( ))`, `(( ))`, `$[ ]`) must be an integer of at most 19 digits, got `{}`",
                        shown(value)
                    ));
                };
                // Decimal as the reader meant it (the shell reads `010` as
                // octal 8), and a negative one in parentheses, so that
                // `x-{{v}}` with `-1` is not the decrement `x--1`.
                if number < 0 {
                    format!("({number})")
                } else {
                    number.to_string()
                }
            }
            Frame::Backtick => {
                return Err(
                    "a `{{ }}` insertion inside backticks has no safe quoting; use `$( )` instead"
                        .to_string(),
                );
            }
        };
        self.out.push_str(&written);
        Ok(())
    }
}

const DOLLAR_BEFORE_VALUE: &str = "a `{{ }}` insertion right after `$` would join it as a variable name or expansion; write `\\$` for a dollar sign";

/// A value as shown in a refusal: its start, control characters escaped.
fn shown(value: &str) -> String {
    value
        .chars()
        .take(40)
        .collect::<String>()
        .escape_debug()
        .to_string()
}

/// A shell variable name (what may stand before a subscript's `[`).
fn is_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// What a value landing after `text`, the inside of `${` so far, becomes.
enum BraceOperator {
    /// The variable's name (`${{{v}}}`).
    Name,
    /// The word of `:-`, `-`, `:=`, `=`, `:+`, `+`, `:?` or `?`.
    Word,
    /// A pattern (`#`, `%`, `/`, `^`, `,` and their doubles) or a
    /// replacement.
    Pattern,
    /// A substring's offset or length (`${s:2}`, `${s:2:3}`).
    Offset,
}

fn brace_operator(text: &str) -> BraceOperator {
    let rest = text.strip_prefix(['!', '#']).unwrap_or(text);
    let name_end = rest
        .char_indices()
        .find(|&(i, c)| {
            !(c.is_ascii_alphanumeric()
                || c == '_'
                || (i == 0 && matches!(c, '@' | '*' | '?' | '$' | '!' | '-')))
        })
        .map_or(rest.len(), |(i, _)| i);
    let mut operator = &rest[name_end..];
    if operator.starts_with('[') {
        operator = operator.find(']').map_or("", |end| &operator[end + 1..]);
    }
    match operator.chars().next() {
        // Nothing after the name yet (or no name): the value would be, or
        // extend, the name.
        None => BraceOperator::Name,
        Some(':') => match operator.chars().nth(1) {
            Some('-' | '=' | '+' | '?') => BraceOperator::Word,
            _ => BraceOperator::Offset,
        },
        Some('-' | '=' | '+' | '?') => BraceOperator::Word,
        _ => BraceOperator::Pattern,
    }
}

/// `value` made literal inside double quotes (`quote_char`) or an unquoted
/// here-document, where `"` is an ordinary character.
fn escape_double(value: &str, quote_char: bool) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        if matches!(c, '\\' | '$' | '`') || (quote_char && c == '"') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{check_template, quote_word};

    #[test]
    fn only_plain_words_stay_bare() {
        for bare in ["prod-omendb", "deployment/api", "a@b:c_d", "0"] {
            assert_eq!(quote_word(bare), bare);
        }
        for (value, quoted) in [
            ("", "''"),
            ("{a,b}", "'{a,b}'"),
            ("x}", "'x}'"),
            ("1.10", "'1.10'"),
            ("a b", "'a b'"),
            ("it's", r"'it'\''s'"),
            ("$(reboot)", "'$(reboot)'"),
            ("LD_PRELOAD=/x.so", "'LD_PRELOAD=/x.so'"),
            ("%x", "'%x'"),
            ("if", "'if'"),
            ("-n", "'-n'"),
            ("-x'y", r"'-x'\''y'"),
        ] {
            assert_eq!(quote_word(value), quoted, "{value:?}");
        }
    }

    #[test]
    fn templates_are_checked_before_any_value_exists() {
        let refused = |source: &str| check_template(source).err().map(|r| r.expression);
        assert_eq!(refused("echo {{params.a}} \"{{params.b}}\""), None);
        assert_eq!(
            refused("echo `x {{params.a}}`").as_deref(),
            Some("{{params.a}}")
        );
        assert_eq!(
            refused("echo \\\\{{params.a}}").as_deref(),
            Some("{{params.a}}")
        );
        // Handlebars renders n > 1 backslashes as n - 1: the value lands
        // after an escaped backslash (3, 5) or an unescaped one (4).
        assert_eq!(refused("echo \\\\\\{{params.a}}"), None);
        assert_eq!(
            refused("echo \\\\\\\\{{params.a}}").as_deref(),
            Some("{{params.a}}")
        );
        assert_eq!(refused("echo \\\\\\\\\\{{params.a}}"), None);
        assert_eq!(
            refused("cat <<{{params.a}}\nx\n").as_deref(),
            Some("{{params.a}}")
        );
        // Handlebars' own escape, raw insertions and block tags are not
        // insertions of escaped values.
        assert_eq!(refused("echo `\\{{params.a}}`"), None);
        assert_eq!(refused("echo `{{{params.a}}}`"), None);
        assert_eq!(
            refused("{{#if params.a}}echo {{params.b}}{{else}}true{{/if}}"),
            None
        );
        assert_eq!(refused("echo $(( {{params.n}} + 1 ))"), None);
    }
}
