//! Frame decoder and every typed message view, on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    portcullis_wire::fuzzing::frames(data);
});
