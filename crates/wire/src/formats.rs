//! Format codes as Bind (parameters, result columns), FunctionCall (arguments) and
//! CopyOutResponse carry them, and the one rule that reads them: no code means every value
//! is text, one code applies to every value, otherwise there is one code per value.

use std::sync::Arc;

/// The format of one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Binary,
}

impl Format {
    /// The format a code stands for. The server refuses codes other than 0 and 1 before
    /// any value is read, so anything but 1 reads as text.
    pub fn of_code(code: i16) -> Format {
        if code == 1 {
            Format::Binary
        } else {
            Format::Text
        }
    }
}

/// A list of format codes, read by the 0 / 1 / N rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Formats(Arc<[i16]>);

impl Formats {
    pub fn new(codes: impl Into<Arc<[i16]>>) -> Self {
        Formats(codes.into())
    }

    /// The format of value `index`.
    pub fn of(&self, index: usize) -> Format {
        match &*self.0 {
            [] => Format::Text,
            [one] => Format::of_code(*one),
            many => many
                .get(index)
                .copied()
                .map_or(Format::Text, Format::of_code),
        }
    }

    /// The codes as sent.
    pub fn codes(&self) -> &[i16] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_one_or_each() {
        assert_eq!(Formats::default().of(3), Format::Text);
        let all = Formats::new(vec![1]);
        assert_eq!((all.of(0), all.of(9)), (Format::Binary, Format::Binary));
        let each = Formats::new(vec![0, 1]);
        assert_eq!(
            (each.of(0), each.of(1), each.of(2)),
            (Format::Text, Format::Binary, Format::Text)
        );
    }
}
