//! Values sent with their format codes, as Bind (parameters) and FunctionCall (arguments)
//! carry them: a count of format codes, the codes, a count of values, the values (the
//! codes read by [`Formats`]).

use crate::{Format, Formats, Reader, WireError};

/// One value: whether it is in binary format, and its bytes (`None` is NULL).
pub type Value<'a> = (bool, Option<&'a [u8]>);

/// Reads the format codes and the values that follow them.
pub(crate) fn read<'a>(r: &mut Reader<'a>) -> Result<Vec<Value<'a>>, WireError> {
    let n = r.count16()?;
    let formats = Formats::new((0..n).map(|_| r.i16()).collect::<Result<Vec<_>, _>>()?);
    let count = r.count16()?;
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        out.push((formats.of(i) == Format::Binary, r.value()?));
    }
    Ok(out)
}
