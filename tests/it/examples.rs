//! The example plugins in `plugins/`, run as real processes against the transcripts in
//! `tests/transcripts/`.

use crate::{python, root, run_all, transcripts};

#[test]
fn the_plugin_without_an_sdk_follows_the_protocol() {
    let all: Vec<_> = transcripts(&root().join("tests/transcripts"))
        .into_iter()
        .filter(|t| t.name.contains("count_events"))
        .collect();
    assert_eq!(all.len(), 2);
    run_all(&all, || python(&root().join("plugins/raw/count_events.py")));
}
