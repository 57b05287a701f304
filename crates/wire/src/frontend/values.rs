//! Values sent with their format codes, as Bind (parameters) and FunctionCall (arguments)
//! carry them: a count of format codes, the codes, a count of values, the values. No code
//! means all text, one code applies to every value, otherwise one code per value.

use crate::{Reader, WireError};

/// One value: whether it is in binary format, and its bytes (`None` is NULL).
pub type Value<'a> = (bool, Option<&'a [u8]>);

/// Reads the format codes and the values that follow them.
pub(crate) fn read<'a>(r: &mut Reader<'a>) -> Result<Vec<Value<'a>>, WireError> {
    let n = r.count16()?;
    let formats: Vec<bool> = (0..n)
        .map(|_| r.i16().map(|f| f == 1))
        .collect::<Result<_, _>>()?;
    let count = r.count16()?;
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let binary = match formats.as_slice() {
            [] => false,
            [one] => *one,
            many => many.get(i).copied().unwrap_or(false),
        };
        out.push((binary, r.value()?));
    }
    Ok(out)
}
