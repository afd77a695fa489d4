//! The built-in plugins: each passes its provider's conformance vectors through a real loopback
//! HTTP server (the same check `pods plugin check` runs), plus behaviour the vectors cannot show.

use pods::conformance;
use pods::plugins::{BUILTIN, Runtime, RuntimeConfig};

async fn check(provider: &str) {
    let plugin = load(provider).await;
    assert_eq!(plugin.manifest().id, provider);
    let vectors = conformance::builtin(provider).expect("vectors parse");
    assert!(
        vectors.len() >= 10,
        "{provider} has only {} vectors",
        vectors.len()
    );
    let failures: Vec<String> = conformance::run(&plugin, &vectors)
        .await
        .into_iter()
        .filter_map(|o| o.result.err().map(|e| format!("{}: {e}", o.name)))
        .collect();
    assert!(
        failures.is_empty(),
        "{provider} failed:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn openai_passes_its_vectors() {
    check("openai").await;
}

#[tokio::test]
async fn anthropic_passes_its_vectors() {
    check("anthropic").await;
}

#[tokio::test]
async fn gemini_passes_its_vectors() {
    check("gemini").await;
}

async fn load(provider: &str) -> pods::plugins::Plugin {
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(std::env::temp_dir().join("pods-test-wasm-cache")),
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let (_, wasm) = BUILTIN
        .iter()
        .find(|(id, _)| *id == provider)
        .expect("built-in plugin");
    runtime.load(wasm).await.expect("loads")
}

fn body(request: &pods::plugins::types::HttpRequest) -> serde_json::Value {
    serde_json::from_slice(&request.body).expect("JSON body")
}

#[tokio::test]
async fn openai_uses_max_completion_tokens_on_api_openai_com_and_max_tokens_elsewhere() {
    let plugin = load("openai").await;
    let request = pods::plugins::types::ChatRequest {
        model: "o4-mini".into(),
        messages: vec![pods::plugins::types::Message {
            role: pods::plugins::types::MessageRole::User,
            content: "hi".into(),
        }],
        max_tokens: Some(100),
        ..Default::default()
    };
    let mut instance = plugin.instantiate(None).await.expect("instance");
    let official = instance
        .build_request(&request, "https://api.openai.com/v1")
        .await
        .expect("no trap")
        .expect("request");
    assert_eq!(official.url, "https://api.openai.com/v1/chat/completions");
    assert_eq!(body(&official)["max_completion_tokens"], 100);
    assert!(body(&official).get("max_tokens").is_none());
    let compatible = instance
        .build_request(&request, "http://localhost:11434/v1/")
        .await
        .expect("no trap")
        .expect("request");
    assert_eq!(compatible.url, "http://localhost:11434/v1/chat/completions");
    assert_eq!(body(&compatible)["max_tokens"], 100);
}

#[tokio::test]
async fn extractors_take_a_json_pointer_as_the_seed_did() {
    let raw = r#"{"content":[{"type":"thinking","thinking":"hm"},{"type":"text","text":"Hi"}]}"#;
    let plugin = load("anthropic").await;
    let mut instance = plugin.instantiate(None).await.expect("instance");
    assert_eq!(
        instance.extract(raw, None).await.expect("no trap"),
        Ok("Hi".into())
    );
    assert_eq!(
        instance
            .extract(raw, Some("/content/0/thinking"))
            .await
            .expect("no trap"),
        Ok("hm".into())
    );
    let missing = instance.extract(raw, Some("/nope")).await.expect("no trap");
    assert!(missing.is_err(), "{missing:?}");
    assert!(
        instance
            .extract("not json", None)
            .await
            .expect("no trap")
            .is_err()
    );
}

#[tokio::test]
async fn json_field_is_an_extractor_only_plugin() {
    let plugin = load("json-field").await;
    assert_eq!(
        plugin.manifest().kind,
        pods::plugins::types::PluginKind::Extractor
    );
    let raw = r#"{"choices":[{"message":{"content":"{\"summary\": \"short\", \"n\": 2}"}}]}"#;
    let mut instance = plugin.instantiate(None).await.expect("instance");
    assert_eq!(
        instance
            .extract(raw, Some("/summary"))
            .await
            .expect("no trap"),
        Ok("short".into())
    );
    assert_eq!(
        instance.extract(raw, Some("/n")).await.expect("no trap"),
        Ok("2".into())
    );
    // It has no provider interface: a provider call is refused, not attempted.
    let request = pods::plugins::types::ChatRequest::default();
    assert!(matches!(
        instance.build_request(&request, "https://x.test").await,
        Err(pods::plugins::PluginError::Misuse(_))
    ));
}
