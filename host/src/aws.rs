//! What the SQS queue and the DynamoDB pod store share: where AWS is (an endpoint such as a
//! `moto_server` on loopback, or the real one), which region, which credentials, and the HTTP
//! client the SDKs send through.
//!
//! The SDKs' default HTTP client builds its own TLS stack (aws-lc, a C library); the host already
//! has reqwest with rustls, so the SDKs are given a small connector over it instead.

use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;

/// Where and as whom to reach AWS. From the environment: `AWS_ENDPOINT_URL` (e.g.
/// `http://127.0.0.1:5000` for moto), `AWS_REGION` (default `us-east-1`), `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`.
#[derive(Clone)]
pub struct AwsSettings {
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for AwsSettings {
    // The secret never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsSettings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl AwsSettings {
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        AwsSettings {
            endpoint: var("AWS_ENDPOINT_URL"),
            region: var("AWS_REGION")
                .or_else(|| var("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|| "us-east-1".into()),
            // moto accepts any credentials; real AWS needs real ones.
            access_key_id: var("AWS_ACCESS_KEY_ID").unwrap_or_else(|| "pods".into()),
            secret_access_key: var("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|| "pods".into()),
            session_token: var("AWS_SESSION_TOKEN"),
        }
    }

    /// A loopback endpoint (tests and local development).
    pub fn local(endpoint: &str) -> Self {
        AwsSettings {
            endpoint: Some(endpoint.to_string()),
            ..AwsSettings::from_env()
        }
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        use aws_sdk_sqs::config::{BehaviorVersion, Region};
        let mut config = aws_sdk_sqs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .credentials_provider(self.credentials())
            // A long poll sends no byte until a message arrives: not a stalled stream.
            .stalled_stream_protection(
                aws_sdk_sqs::config::StalledStreamProtectionConfig::disabled(),
            )
            .http_client(http_client());
        if let Some(endpoint) = &self.endpoint {
            config = config.endpoint_url(endpoint);
        }
        aws_sdk_sqs::Client::from_conf(config.build())
    }

    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        use aws_sdk_dynamodb::config::{BehaviorVersion, Region};
        let mut config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .credentials_provider(self.credentials())
            .http_client(http_client());
        if let Some(endpoint) = &self.endpoint {
            config = config.endpoint_url(endpoint);
        }
        aws_sdk_dynamodb::Client::from_conf(config.build())
    }

    fn credentials(&self) -> aws_sdk_sqs::config::Credentials {
        aws_sdk_sqs::config::Credentials::new(
            &self.access_key_id,
            &self.secret_access_key,
            self.session_token.clone(),
            None,
            "pods-environment",
        )
    }
}

fn http_client() -> SharedHttpClient {
    SharedHttpClient::new(Reqwest(
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // Longer than SQS's longest long poll (20 s).
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_default(),
    ))
}

/// Sends the SDKs' requests with reqwest.
#[derive(Debug, Clone)]
struct Reqwest(reqwest::Client);

impl HttpClient for Reqwest {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

impl HttpConnector for Reqwest {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = self.0.clone();
        HttpConnectorFuture::new(async move {
            let method = reqwest::Method::from_bytes(request.method().as_bytes())
                .map_err(|e| ConnectorError::user(e.into()))?;
            let mut builder = client.request(method, request.uri());
            for (name, value) in request.headers() {
                builder = builder.header(name, value);
            }
            // The SDKs' SQS and DynamoDB bodies are in memory (JSON), never streamed.
            let body = request.body().bytes().unwrap_or_default().to_vec();
            let answer = builder.body(body).send().await.map_err(|e| {
                if e.is_timeout() {
                    ConnectorError::timeout(e.into())
                } else {
                    ConnectorError::io(e.into())
                }
            })?;
            let mut response = http::Response::builder().status(answer.status().as_u16());
            for (name, value) in answer.headers() {
                response = response.header(name.as_str(), value.as_bytes());
            }
            let bytes = answer
                .bytes()
                .await
                .map_err(|e| ConnectorError::io(e.into()))?;
            let response = response
                .body(SdkBody::from(bytes))
                .map_err(|e| ConnectorError::other(e.into(), None))?;
            HttpResponse::try_from(response).map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}
