//! Reading a psql script (PostgreSQL's regression SQL files) into the statements psql
//! would send, the way psql's own lexer does: statements end at a `;` outside quotes,
//! comments and parentheses (and outside a `CREATE FUNCTION … BEGIN ATOMIC … END` body);
//! a backslash outside quotes starts a meta-command that runs to the end of the line, and
//! `\g`, `\gset`, `\gexec`, `\gx`, `\gdesc`, `\crosstabview` and `\watch` also send the
//! statement typed so far. `\set`, `\unset` and `\getenv` are followed, so that `:name`,
//! `:'name'` and `:"name"` are substituted as psql does (the regression files load data and
//! libraries through such variables); a quoted reference to a variable that is not set is
//! reported, so that the caller can skip the statement. The data lines after
//! `COPY … FROM STDIN` (or `\copy … from stdin`) up to `\.` are not SQL: they are returned
//! with their statement. Conditionals (`\if`) are ignored, so both branches are read.

use std::collections::HashMap;

/// One statement as psql would send it.
#[derive(Debug, Clone)]
pub struct Item {
    /// The statement's text with variables substituted, without its terminating `;`.
    pub sql: String,
    /// 1-based line where the statement starts.
    pub line: usize,
    /// `:'name'`/`:"name"` naming a variable that is not set (from `\gset`, say).
    pub unresolved_variable: bool,
    /// `COPY … FROM STDIN`: when the server starts the copy, the lines after the
    /// statement up to `\.` are its data ([`Script::copy_data`]); when it refuses the
    /// statement, psql reads them as SQL, and so does [`Script::next`].
    pub copy_from_stdin: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Normal,
    /// In a '…' literal; `true` for E'…' where backslashes escape.
    Single(bool),
    Double,
    Dollar(String),
    Block(u32),
}

struct Reader<'e> {
    env: &'e HashMap<String, String>,
    vars: HashMap<String, String>,
    state: State,
    buf: String,
    start_line: usize,
    parens: i32,
    begin_depth: i32,
    /// Lower-cased words of the current statement outside quotes (for BEGIN ATOMIC).
    words: Vec<String>,
    unresolved: bool,
    out: Vec<Item>,
    /// Data lines of a `\copy … from stdin`, which are thrown away.
    discard_data: bool,
}

/// A psql script read one statement at a time, so that the caller can say whether a
/// `COPY … FROM STDIN` started (and its data follows) as psql learns from the server.
pub struct Script<'a> {
    reader: Reader<'a>,
    lines: Vec<&'a str>,
    pos: usize,
    next_item: usize,
}

impl<'a> Script<'a> {
    /// A script over `text`; `env` answers `\getenv`.
    pub fn new(text: &'a str, env: &'a HashMap<String, String>) -> Script<'a> {
        Script {
            reader: Reader {
                env,
                vars: HashMap::new(),
                state: State::Normal,
                buf: String::new(),
                start_line: 1,
                parens: 0,
                begin_depth: 0,
                words: Vec::new(),
                unresolved: false,
                out: Vec::new(),
                discard_data: false,
            },
            lines: text.split_inclusive('\n').collect(),
            pos: 0,
            next_item: 0,
        }
    }

    /// The next statement psql would send.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Item> {
        loop {
            if self.next_item < self.reader.out.len() {
                let item = self.reader.out[self.next_item].clone();
                self.next_item += 1;
                return Some(item);
            }
            if self.pos >= self.lines.len() {
                if self.pos == self.lines.len() {
                    self.pos += 1;
                    self.reader.finish_statement(false);
                    continue;
                }
                return None;
            }
            if self.reader.discard_data {
                self.reader.discard_data = false;
                self.copy_data();
                continue;
            }
            let line = self.lines[self.pos];
            self.pos += 1;
            self.reader.line(self.pos, line);
        }
    }

    /// The data of the `COPY … FROM STDIN` just returned: the lines up to `\.`.
    pub fn copy_data(&mut self) -> String {
        let mut data = String::new();
        while self.pos < self.lines.len() {
            let l = self.lines[self.pos];
            self.pos += 1;
            if l.trim_end_matches(['\n', '\r']) == "\\." {
                break;
            }
            data.push_str(l);
        }
        data
    }
}

/// Reads all of `text` as psql would when every `COPY … FROM STDIN` starts (its data is
/// skipped); `env` answers `\getenv`.
pub fn read(text: &str, env: &HashMap<String, String>) -> Vec<Item> {
    let mut script = Script::new(text, env);
    let mut out = Vec::new();
    while let Some(item) = script.next() {
        if item.copy_from_stdin {
            script.copy_data();
        }
        out.push(item);
    }
    out
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$' || !c.is_ascii()
}

fn is_var_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || !c.is_ascii()
}

fn quote_literal(v: &str) -> String {
    if v.contains('\\') {
        format!("E'{}'", v.replace('\\', "\\\\").replace('\'', "''"))
    } else {
        format!("'{}'", v.replace('\'', "''"))
    }
}

impl Reader<'_> {
    fn push(&mut self, line_no: usize, s: &str) {
        if self.buf.trim().is_empty() && !s.trim().is_empty() {
            self.start_line = line_no;
        }
        self.buf.push_str(s);
    }

    fn line(&mut self, line_no: usize, line: &str) {
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        let mut word = String::new();
        while i < chars.len() {
            let c = chars[i];
            let next = chars.get(i + 1).copied();
            match self.state.clone() {
                State::Normal => {
                    if is_ident_char(c) {
                        word.push(c);
                    } else if !word.is_empty() {
                        self.word(std::mem::take(&mut word));
                    }
                    match c {
                        '-' if next == Some('-') => {
                            let rest: String = chars[i..].iter().collect();
                            self.push(line_no, &rest);
                            return;
                        }
                        '/' if next == Some('*') => {
                            self.state = State::Block(1);
                            self.push(line_no, "/*");
                            i += 2;
                            continue;
                        }
                        '\'' => {
                            let prev = i.checked_sub(1).map(|p| chars[p]);
                            let before = i.checked_sub(2).map(|p| chars[p]);
                            let escape = matches!(prev, Some('e' | 'E'))
                                && !before.is_some_and(is_ident_char);
                            self.state = State::Single(escape);
                        }
                        '"' => self.state = State::Double,
                        '$' if !i.checked_sub(1).is_some_and(|p| is_ident_char(chars[p])) => {
                            // A dollar quote: $tag$ with an identifier (not starting with a
                            // digit) or nothing between the dollars.
                            let mut j = i + 1;
                            while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_')
                            {
                                j += 1;
                            }
                            let tag: String = chars[i + 1..j].iter().collect();
                            if j < chars.len()
                                && chars[j] == '$'
                                && !tag.starts_with(|c: char| c.is_ascii_digit())
                            {
                                self.state = State::Dollar(tag);
                                let s: String = chars[i..=j].iter().collect();
                                self.push(line_no, &s);
                                i = j + 1;
                                continue;
                            }
                        }
                        '(' => self.parens += 1,
                        ')' => self.parens -= 1,
                        ';' if self.parens <= 0 && self.begin_depth <= 0 => {
                            self.finish_statement(true);
                            i += 1;
                            continue;
                        }
                        '\\' => {
                            let rest: String = chars[i + 1..].iter().collect();
                            self.meta(line_no, &rest);
                            return;
                        }
                        ':' if next != Some(':')
                            && i.checked_sub(1).is_none_or(|p| chars[p] != ':') =>
                        {
                            if let Some((text, used)) = self.variable(&chars[i + 1..]) {
                                self.push(line_no, &text);
                                i += 1 + used;
                                continue;
                            }
                        }
                        _ => {}
                    }
                    self.push(line_no, &c.to_string());
                    i += 1;
                }
                State::Single(escape) => {
                    if escape && c == '\\' {
                        let s: String = chars[i..(i + 2).min(chars.len())].iter().collect();
                        self.push(line_no, &s);
                        i += 2;
                        continue;
                    }
                    if c == '\'' {
                        self.state = State::Normal;
                    }
                    self.push(line_no, &c.to_string());
                    i += 1;
                }
                State::Double => {
                    if c == '"' {
                        self.state = State::Normal;
                    }
                    self.push(line_no, &c.to_string());
                    i += 1;
                }
                State::Dollar(tag) => {
                    let close: Vec<char> = format!("${tag}$").chars().collect();
                    if chars[i..].starts_with(&close) {
                        self.state = State::Normal;
                        let s: String = close.iter().collect();
                        self.push(line_no, &s);
                        i += close.len();
                        continue;
                    }
                    self.push(line_no, &c.to_string());
                    i += 1;
                }
                State::Block(depth) => {
                    if c == '/' && next == Some('*') {
                        self.state = State::Block(depth + 1);
                        self.push(line_no, "/*");
                        i += 2;
                        continue;
                    }
                    if c == '*' && next == Some('/') {
                        self.state = if depth <= 1 {
                            State::Normal
                        } else {
                            State::Block(depth - 1)
                        };
                        self.push(line_no, "*/");
                        i += 2;
                        continue;
                    }
                    self.push(line_no, &c.to_string());
                    i += 1;
                }
            }
        }
        if !word.is_empty() {
            self.word(word);
        }
    }

    /// Tracks `BEGIN … END` inside `CREATE [OR REPLACE] FUNCTION|PROCEDURE`, as psql does.
    fn word(&mut self, w: String) {
        let w = w.to_ascii_lowercase();
        let is_routine = match self.words.as_slice() {
            [create, kind, ..]
                if create == "create" && (kind == "function" || kind == "procedure") =>
            {
                true
            }
            [create, or, replace, kind, ..]
                if create == "create"
                    && or == "or"
                    && replace == "replace"
                    && (kind == "function" || kind == "procedure") =>
            {
                true
            }
            _ => false,
        };
        if is_routine {
            match w.as_str() {
                "begin" => self.begin_depth += 1,
                "case" if self.begin_depth > 0 => self.begin_depth += 1,
                "end" if self.begin_depth > 0 => self.begin_depth -= 1,
                _ => {}
            }
        }
        if self.words.len() < 8 {
            self.words.push(w);
        }
    }

    /// A variable reference after `:`: its substitution and how many characters it used.
    fn variable(&mut self, rest: &[char]) -> Option<(String, usize)> {
        match rest.first()? {
            q @ ('\'' | '"') => {
                let end = rest[1..].iter().position(|c| c == q)? + 1;
                let name: String = rest[1..end].iter().collect();
                if name.is_empty() || !name.chars().all(is_var_char) {
                    return None;
                }
                match self.vars.get(&name) {
                    Some(v) => Some((
                        if *q == '\'' {
                            quote_literal(v)
                        } else {
                            format!("\"{}\"", v.replace('"', "\"\""))
                        },
                        end + 1,
                    )),
                    None => {
                        self.unresolved = true;
                        None
                    }
                }
            }
            _ => {
                let len = rest.iter().take_while(|c| is_var_char(**c)).count();
                let name: String = rest[..len].iter().collect();
                self.vars.get(&name).map(|v| (v.clone(), len))
            }
        }
    }

    fn finish_statement(&mut self, terminated: bool) {
        let sql = std::mem::take(&mut self.buf);
        let words = std::mem::take(&mut self.words);
        self.parens = 0;
        self.begin_depth = 0;
        let unresolved = std::mem::take(&mut self.unresolved);
        if sql.trim().is_empty() {
            return;
        }
        let lower = sql.to_ascii_lowercase();
        let flat: Vec<&str> = lower.split_whitespace().collect();
        let copy_from_stdin = words.first().is_some_and(|w| w == "copy")
            && flat.windows(2).any(|w| w == ["from", "stdin"]);
        self.out.push(Item {
            sql: sql.trim().to_string(),
            line: self.start_line,
            unresolved_variable: unresolved,
            copy_from_stdin: copy_from_stdin && terminated,
        });
    }

    /// A meta-command: `rest` is the line after the backslash.
    fn meta(&mut self, _line_no: usize, rest: &str) {
        let rest = rest.trim_end_matches(['\n', '\r']);
        let (cmd, args) = match rest.find(char::is_whitespace) {
            Some(i) => (&rest[..i], rest[i..].trim()),
            None => (rest, ""),
        };
        match cmd {
            "g" | "gx" | "gset" | "gexec" | "gdesc" | "crosstabview" | "watch" => {
                self.finish_statement(true)
            }
            "set" => {
                let mut parts = args.splitn(2, char::is_whitespace);
                if let Some(name) = parts.next().filter(|n| !n.is_empty()) {
                    let value = self.set_value(parts.next().unwrap_or(""));
                    self.vars.insert(name.to_string(), value);
                }
            }
            "unset" => {
                self.vars.remove(args);
            }
            "getenv" => {
                let mut parts = args.split_whitespace();
                if let (Some(name), Some(var)) = (parts.next(), parts.next())
                    && let Some(v) = self.env.get(var)
                {
                    self.vars.insert(name.to_string(), v.clone());
                }
            }
            "copy" => {
                let lower = args.to_ascii_lowercase();
                let flat: Vec<&str> = lower.split_whitespace().collect();
                if flat.windows(2).any(|w| w == ["from", "stdin"]) {
                    self.discard_data = true;
                }
            }
            _ => {}
        }
    }

    /// The value of `\set name …`: its arguments concatenated, quotes removed and
    /// variables substituted.
    fn set_value(&self, args: &str) -> String {
        let chars: Vec<char> = args.chars().collect();
        let mut out = String::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                c if c.is_whitespace() => i += 1,
                '\'' => {
                    i += 1;
                    while i < chars.len() {
                        if chars[i] == '\'' {
                            if chars.get(i + 1) == Some(&'\'') {
                                out.push('\'');
                                i += 2;
                                continue;
                            }
                            i += 1;
                            break;
                        }
                        out.push(chars[i]);
                        i += 1;
                    }
                }
                ':' => {
                    i += 1;
                    let quoted = matches!(chars.get(i), Some('\'' | '"'));
                    if quoted {
                        i += 1;
                    }
                    let len = chars[i..].iter().take_while(|c| is_var_char(**c)).count();
                    let name: String = chars[i..i + len].iter().collect();
                    i += len + usize::from(quoted);
                    if let Some(v) = self.vars.get(&name) {
                        out.push_str(v);
                    }
                }
                _ => {
                    while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '\'' {
                        out.push(chars[i]);
                        i += 1;
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqls(text: &str) -> Vec<String> {
        read(text, &HashMap::new())
            .into_iter()
            .map(|i| i.sql)
            .collect()
    }

    #[test]
    fn splits_like_psql() {
        assert_eq!(
            sqls("select ';' -- ; \n; select $$a;b$$; /* ; */ select (1;2);\n"),
            vec!["select ';' -- ;", "select $$a;b$$", "/* ; */ select (1;2)"]
        );
        assert_eq!(
            sqls("create function f() returns int begin atomic select 1; end;\nselect 2;"),
            vec![
                "create function f() returns int begin atomic select 1; end",
                "select 2"
            ]
        );
        assert_eq!(
            sqls("begin; select case when true then 1 end; end;"),
            vec!["begin", "select case when true then 1 end", "end"]
        );
    }

    #[test]
    fn meta_commands_variables_and_copy_data() {
        let env = HashMap::from([("SRC".to_string(), "/src".to_string())]);
        let items = read(
            "\\getenv dir SRC\n\\set f :dir '/data/x.data'\nCOPY t FROM :'f';\n\
             select 1 \\gset\n\\d t\nselect :'nope';\nselect a[1:2], :\"f\";\n\
             copy t from stdin;\n1\t2\n\\.\nselect 3;\n",
            &env,
        );
        let sql: Vec<&str> = items.iter().map(|i| i.sql.as_str()).collect();
        assert_eq!(
            sql,
            vec![
                "COPY t FROM '/src/data/x.data'",
                "select 1",
                "select :'nope'",
                "select a[1:2], \"/src/data/x.data\"",
                "copy t from stdin",
                "select 3"
            ]
        );
        assert!(items[2].unresolved_variable);
        assert!(!items[3].unresolved_variable);
        assert!(items[4].copy_from_stdin);
    }

    #[test]
    fn copy_data_only_when_the_copy_starts() {
        let env = HashMap::new();
        let text = "copy t from stdin;\n1\n\\.\ncopy u from stdin;\nselect 2;\n";
        let mut script = Script::new(text, &env);
        let first = script.next().unwrap();
        assert!(first.copy_from_stdin);
        assert_eq!(script.copy_data(), "1\n");
        // The second COPY fails on the server: what follows is SQL again.
        assert!(script.next().unwrap().copy_from_stdin);
        assert_eq!(script.next().unwrap().sql, "select 2");
        assert!(script.next().is_none());
    }
}
