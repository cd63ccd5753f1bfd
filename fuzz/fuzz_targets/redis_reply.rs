#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flockrun::fuzz::redis_reply(data));
