//! The statement analyser: parse (libpg_query), walk every tree into facts, normalise.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(sql) = std::str::from_utf8(data) {
        for scs in [true, false] {
            let options = portcullis_sql::LexerOptions {
                standard_conforming_strings: scs,
            };
            let _ = portcullis_sql::parse(sql, options);
        }
        let _ = portcullis_sql::normalized_key(sql);
    }
});
