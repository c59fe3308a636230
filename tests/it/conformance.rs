//! Both SDKs' conformance plugins, as real processes, against every transcript in
//! `protocol/transcripts/`.

use std::process::Command;

use crate::{PATIENCE, python, root, run_all, transcripts};

/// The transcripts of `protocol/transcripts/` when this test was written: finding fewer means the
/// folder moved or the reader broke, and a conformance test that plays nothing proves nothing.
const AT_LEAST: usize = 13;

/// Every transcript of the spec, at least [`AT_LEAST`] of them.
fn spec_transcripts() -> Vec<crate::Transcript> {
    let all = transcripts(&root().join("protocol/transcripts"));
    assert!(
        all.len() >= AT_LEAST,
        "found only {} transcripts in protocol/transcripts/",
        all.len()
    );
    all
}

#[test]
fn the_rust_sdk_passes_every_transcript() {
    let all = spec_transcripts();
    run_all(&all, || {
        Command::new(env!("CARGO_BIN_EXE_sgevents-conformance"))
    });
}

#[test]
fn the_python_sdk_passes_every_transcript() {
    let all = spec_transcripts();
    run_all(&all, || {
        python(&root().join("sdk-python/tests/conformance_plugin.py"))
    });
}

/// The driver must be able to fail: a plugin that registers something else is caught, and the
/// message says where and what.
#[test]
fn a_plugin_that_strays_from_a_transcript_fails_it() {
    let all = transcripts(&root().join("protocol/transcripts"));
    let two = all
        .iter()
        .find(|t| t.name.ends_with("two-subscriptions.txt"))
        .expect("transcript exists");
    let err = two
        .run(
            &mut python(&root().join("plugins/raw/count_events.py")),
            PATIENCE,
        )
        .expect_err("count_events registers other subscriptions");
    assert!(err.message.starts_with("expected {"), "{err}");
    assert!(err.message.contains("\"name\":\"count\""), "{err}");
}
