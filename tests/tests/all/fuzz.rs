//! Fuzzing with proptest (`cargo fuzz` needs a nightly toolchain; these run on stable, in the
//! test command): random and mutated inputs to the parts that read what others send — the SSE
//! framing, `{{pod_id}}` interpolation, the vault's decrypt, and every built-in plugin's
//! `parse-response` and stream parser. A short run by default; a long one by hand:
//!
//! ```sh
//! PROPTEST_CASES=100000 cargo test --release -p pods-e2e --test all -- fuzz::
//! ```
//!
//! A failure is shrunk to a minimal input and saved under `tests/tests/all/fuzz.proptest-regressions`,
//! which is committed: every finding stays a regression test.

use std::collections::{BTreeSet, HashMap};
use std::sync::LazyLock;

use proptest::prelude::*;

use pods::conformance::{self, Vector};
use pods::context::{Context, interpolate};
use pods::plugins::types::{HttpResponse, SseEvent};
use pods::plugins::{BUILTIN, Plugin, PluginError, Runtime, RuntimeConfig};
use pods::sse::SseDecoder;
use pods::vault::{Binding, Sealed, Vault};

/// One async runtime, sandbox and set of loaded plugins for every case.
static TOKIO: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio")
});
static SANDBOX: LazyLock<Runtime> = LazyLock::new(|| {
    Runtime::new(RuntimeConfig {
        cache_dir: Some(std::env::temp_dir().join("pods-test-wasm-cache")),
        ..RuntimeConfig::default()
    })
    .expect("runtime")
});
static PROVIDERS: LazyLock<Vec<(Plugin, Vec<Vector>)>> = LazyLock::new(|| {
    BUILTIN
        .iter()
        .filter_map(|(id, wasm)| {
            let vectors = conformance::builtin(id).expect("vectors");
            (!vectors.is_empty()).then(|| {
                let plugin = TOKIO.block_on(SANDBOX.load(wasm)).expect("plugin loads");
                (plugin, vectors)
            })
        })
        .collect()
});

fn frame(chunks: &[&[u8]]) -> Vec<SseEvent> {
    let mut decoder = SseDecoder::default();
    let mut events = Vec::new();
    for chunk in chunks {
        events.extend(decoder.push(chunk).expect("short lines"));
    }
    events.extend(decoder.finish());
    events
}

/// Bytes that look like a stream: field names, separators and line endings mixed with noise.
fn sse_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"data: ".to_vec()),
        Just(b"data:".to_vec()),
        Just(b"event: ".to_vec()),
        Just(b": comment".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\n\n".to_vec()),
        Just("é€😀".as_bytes().to_vec()),
        proptest::collection::vec(any::<u8>(), 0..12),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|p| p.concat())
}

/// A vector's recorded body, mutated: bytes flipped, a cut, a splice of noise.
fn mutated(body: &[u8], flips: &[(usize, u8)], cut: Option<usize>, noise: &[u8]) -> Vec<u8> {
    let mut body = body.to_vec();
    for (at, byte) in flips {
        if !body.is_empty() {
            let i = at % body.len();
            body[i] = *byte;
        }
    }
    if let Some(at) = cut
        && !body.is_empty()
    {
        body.truncate(at % body.len());
    }
    let at = if body.is_empty() {
        0
    } else {
        noise.len() % body.len()
    };
    body.splice(at..at, noise.iter().copied());
    body
}

/// A plugin call's outcome is fine unless the sandbox stopped the plugin: a trap (a Rust panic
/// in the guest), a deadline or the memory cap means the plugin could not cope with the input.
fn no_sandbox_failure<T: std::fmt::Debug>(
    id: &str,
    r: &Result<T, PluginError>,
) -> Result<(), TestCaseError> {
    match r {
        Err(e) => Err(TestCaseError::fail(format!("{id}: {e}"))),
        Ok(_) => Ok(()),
    }
}

proptest! {
    // 256 cases each unless PROPTEST_CASES says otherwise.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    /// However the network splits a stream into chunks, the same events come out.
    #[test]
    fn sse_framing_does_not_depend_on_chunking(bytes in sse_bytes(), cuts in proptest::collection::vec(any::<usize>(), 0..8)) {
        let whole = frame(&[&bytes]);
        let mut points: Vec<usize> = cuts.iter().map(|c| if bytes.is_empty() { 0 } else { c % bytes.len() }).collect();
        points.sort();
        let mut chunks = Vec::new();
        let mut last = 0;
        for p in points {
            chunks.push(&bytes[last..p]);
            last = p;
        }
        chunks.push(&bytes[last..]);
        prop_assert_eq!(frame(&chunks), whole);
    }

    /// Interpolation never panics, leaves text without references alone, and replaces only what
    /// resolves.
    #[test]
    fn interpolation_is_total(text in ".{0,200}", ids in proptest::collection::vec("[a-z0-9-]{1,12}", 0..4), outputs in proptest::collection::vec(".{0,30}", 0..4)) {
        let mut context = Context::default();
        for (id, out) in ids.iter().zip(&outputs) {
            context.variables.insert(id.clone(), out.clone());
        }
        let mut warnings = BTreeSet::new();
        let result = interpolate(&text, &context, &mut warnings);
        if !text.contains("{{") {
            prop_assert_eq!(&result, &text);
            prop_assert!(warnings.is_empty());
        }
        for (id, out) in ids.iter().zip(&outputs) {
            let mut w = BTreeSet::new();
            let with = format!("[{{{{{id}}}}}]");
            if !out.contains("{{") {
                let expected = format!("[{}]", context.variables[id]);
                prop_assert_eq!(interpolate(&with, &context, &mut w), expected);
            }
        }
    }

    /// Whatever is stored, decrypting fails closed and never panics; a sealed key opens only
    /// with its own binding.
    #[test]
    fn vault_decrypt_fails_closed(ciphertext in ".{0,80}", nonce in ".{0,24}", secret in ".{0,64}", flip in any::<usize>()) {
        let vault = Vault::new(&[("k1".into(), "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into())]).expect("vault");
        let binding = Binding { workspace_id: "ws", provider: "openai", key_id: "key" };
        let forged = Sealed { ciphertext, nonce, master_key_id: "k1".into() };
        prop_assert!(vault.open(&binding, &forged).is_err());

        let sealed = vault.seal(&binding, &secret);
        let opened = vault.open(&binding, &sealed).expect("opens");
        prop_assert_eq!(opened.expose(), secret.as_str());
        let other = Binding { workspace_id: "ws2", provider: "openai", key_id: "key" };
        prop_assert!(vault.open(&other, &sealed).is_err());
        // One character of the ciphertext changed: refused.
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut bytes = b64.decode(&sealed.ciphertext).expect("base64");
        let i = flip % bytes.len();
        bytes[i] ^= 0x01;
        let tampered = Sealed { ciphertext: b64.encode(bytes), ..sealed.clone() };
        prop_assert!(vault.open(&binding, &tampered).is_err());
    }

    /// Every built-in plugin answers any HTTP response — its vectors' bodies mutated, or noise —
    /// with a completion or a typed provider error, never a trap.
    #[test]
    fn plugins_parse_any_response(
        which in any::<usize>(),
        status in prop_oneof![Just(200u16), Just(400), Just(401), Just(429), Just(500), Just(503), 100u16..600],
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in proptest::option::of(any::<usize>()),
        noise in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        let (plugin, vectors) = &PROVIDERS[which % PROVIDERS.len()];
        let vector = &vectors[(which / PROVIDERS.len()) % vectors.len()];
        let response = HttpResponse {
            status,
            headers: vec![("content-type".into(), "application/json".into()), ("retry-after".into(), "1".into())],
            body: mutated(&vector.body, &flips, cut, &noise),
        };
        let id = &plugin.manifest().id;
        let result = TOKIO.block_on(async {
            let mut instance = plugin.instantiate(None).await?;
            instance.parse_response(&vector.spec.request, "https://example.test/v1", &response).await
        });
        no_sandbox_failure(id, &result)?;
    }

    /// …and any stream: its vectors' streams mutated, then framed and pushed event by event.
    #[test]
    fn plugins_parse_any_stream(
        which in any::<usize>(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in proptest::option::of(any::<usize>()),
        noise in sse_bytes(),
    ) {
        let (plugin, vectors) = &PROVIDERS[which % PROVIDERS.len()];
        let streams: Vec<&Vector> = vectors.iter().filter(|v| v.spec.request.stream).collect();
        let vector = streams[(which / PROVIDERS.len()) % streams.len()];
        let events = frame(&[&mutated(&vector.body, &flips, cut, &noise)]);
        let id = &plugin.manifest().id;
        let result = TOKIO.block_on(async {
            let mut instance = plugin.instantiate(None).await?;
            instance.stream_start(&vector.spec.request, "https://example.test/v1").await?;
            for event in &events {
                if instance.stream_push(event).await?.is_err() {
                    // A typed error ends the stream, as the host does.
                    return Ok(None);
                }
            }
            instance.stream_finish().await.map(Some)
        });
        no_sandbox_failure(id, &result)?;
    }
}

#[test]
fn the_fuzzed_plugins_are_the_providers() {
    let ids: HashMap<&str, usize> = PROVIDERS
        .iter()
        .map(|(p, v)| (p.manifest().id.as_str(), v.len()))
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
}
