//! Startup packets (SSLRequest, GSSENCRequest, CancelRequest, StartupMessage) on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    portcullis_wire::fuzzing::startup(data);
});
