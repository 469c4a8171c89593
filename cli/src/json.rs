//! JSON objects written by hand: one flat object per line, with strings
//! escaped as RFC 8259 requires (quote, backslash and every control
//! character; everything else as UTF-8).

use std::fmt::Write;

/// A JSON object being written.
pub struct Object {
    out: String,
}

impl Object {
    /// `{`
    pub fn new() -> Object {
        Object {
            out: String::from("{"),
        }
    }

    fn key(&mut self, key: &str) {
        if self.out.len() > 1 {
            self.out.push(',');
        }
        string(&mut self.out, key);
        self.out.push(':');
    }

    /// `"key":"value"`
    pub fn str(mut self, key: &str, value: &str) -> Object {
        self.key(key);
        string(&mut self.out, value);
        self
    }

    /// `"key":123`
    pub fn num(mut self, key: &str, value: impl Into<i128>) -> Object {
        self.key(key);
        let _ = write!(self.out, "{}", value.into());
        self
    }

    /// `"key":123` or `"key":null`
    pub fn opt_num(self, key: &str, value: Option<i64>) -> Object {
        match value {
            Some(v) => self.num(key, v),
            None => self.null(key),
        }
    }

    /// `"key":"value"` or `"key":null`
    pub fn opt_str(self, key: &str, value: Option<&str>) -> Object {
        match value {
            Some(v) => self.str(key, v),
            None => self.null(key),
        }
    }

    /// `"key":null`
    pub fn null(mut self, key: &str) -> Object {
        self.key(key);
        self.out.push_str("null");
        self
    }

    /// The object, closed.
    pub fn end(mut self) -> String {
        self.out.push('}');
        self.out
    }
}

/// Appends `s` as a JSON string.
fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        let line = Object::new()
            .str("a\"b", "q\"\\\n\t\u{1}\u{7f}é")
            .num("n", -5i64)
            .opt_num("c", None)
            .end();
        assert_eq!(line, r#"{"a\"b":"q\"\\\n\t\u0001\u007fé","n":-5,"c":null}"#);
        assert_eq!(Object::new().end(), "{}");
    }
}
