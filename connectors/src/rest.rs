//! The worker's REST API: Kafka Connect's paths, payloads and status codes, so its clients and
//! scripts work unchanged. Errors are `{"error_code": N, "message": "..."}`.

use std::collections::BTreeMap;
use std::future::Future;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use serde_json::{json, Value as Json};

use crate::config::Props;
use crate::herder::Herder;
use crate::worker::{ApiError, ApiResult, TargetState};

/// The worker behind the API, standalone or distributed.
type Shared = std::sync::Arc<dyn Herder>;

/// The API's routes over `herder` (a standalone [`Worker`](crate::Worker) or a
/// [`DistributedWorker`](crate::distributed::DistributedWorker)).
pub fn router(herder: Shared) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/health", get(health))
        .route("/connectors", get(list).post(create))
        .route("/connectors/{name}", get(info).delete(delete))
        .route("/connectors/{name}/config", get(config).put(put_config).patch(patch_config))
        .route("/connectors/{name}/status", get(status))
        .route("/connectors/{name}/restart", post(restart))
        .route("/connectors/{name}/pause", put(pause))
        .route("/connectors/{name}/resume", put(resume))
        .route("/connectors/{name}/stop", put(stop))
        .route("/connectors/{name}/tasks", get(tasks))
        .route("/connectors/{name}/tasks/{task}/status", get(task_status))
        .route("/connectors/{name}/tasks/{task}/restart", post(restart_task))
        .route("/connectors/{name}/offsets", get(offsets).patch(alter_offsets).delete(reset_offsets))
        .route("/connector-plugins", get(plugins))
        .route("/connector-plugins/{plugin}/config", get(plugin_config))
        .route("/connector-plugins/{plugin}/config/validate", put(validate))
        .fallback(|| async { error(ApiError { status: 404, message: "HTTP 404 Not Found".into() }) })
        .with_state(herder)
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    herder: Shared,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(herder)).with_graceful_shutdown(shutdown).await
}

fn error(e: ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(json!({"error_code": e.status, "message": e.message}))).into_response()
}

fn reply(result: ApiResult<Response>) -> Response {
    result.unwrap_or_else(error)
}

fn ok(status: StatusCode, body: Json) -> ApiResult<Response> {
    Ok((status, axum::Json(body)).into_response())
}

fn no_content() -> ApiResult<Response> {
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A request body as JSON, or a 400 naming what is wrong with it.
fn parse_body(body: &Bytes) -> ApiResult<Json> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("The request body is not valid JSON: {e}")))
}

/// A JSON object of configs as strings (numbers and booleans taken as their text, as Kafka's
/// JSON mapper takes them); `null` values are left out.
fn config_map(value: &Json, what: &str) -> ApiResult<Props> {
    let object = value.as_object().ok_or_else(|| ApiError::bad_request(format!("{what} must be a JSON object")))?;
    let mut out = Props::new();
    for (k, v) in object {
        match v {
            Json::Null => {}
            Json::String(s) => {
                out.insert(k.clone(), s.clone());
            }
            Json::Number(_) | Json::Bool(_) => {
                out.insert(k.clone(), v.to_string());
            }
            _ => return Err(ApiError::bad_request(format!("{what}: the value of {k:?} must be a string"))),
        }
    }
    Ok(out)
}

/// A query's values of `key` (repeated keys give several).
fn query_values(query: &Option<String>, key: &str) -> Vec<String> {
    query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| v.to_string())
        .collect()
}

fn query_flag(query: &Option<String>, key: &str) -> ApiResult<bool> {
    match query_values(query, key).last().map(String::as_str) {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") || v.is_empty() => Ok(false),
        Some(v) => Err(ApiError::bad_request(format!("Query parameter {key} must be true or false, not {v:?}"))),
    }
}

async fn root(State(worker): State<Shared>) -> Response {
    axum::Json(worker.server_info()).into_response()
}

async fn health() -> Response {
    axum::Json(json!({"status": "healthy", "message": "Worker has completed startup and is ready to handle requests."}))
        .into_response()
}

async fn list(State(worker): State<Shared>, RawQuery(query): RawQuery) -> Response {
    reply(
        async {
            let expand = query_values(&query, "expand");
            let names = worker.connectors().await;
            if expand.is_empty() {
                return ok(StatusCode::OK, json!(names));
            }
            let mut out = serde_json::Map::new();
            for name in names {
                let mut entry = serde_json::Map::new();
                for e in &expand {
                    match e.as_str() {
                        "status" => {
                            if let Ok(s) = worker.status(&name).await {
                                entry.insert("status".into(), s);
                            }
                        }
                        "info" => {
                            if let Ok(i) = worker.info(&name).await {
                                entry.insert("info".into(), i.to_json());
                            }
                        }
                        other => {
                            return Err(ApiError::bad_request(format!(
                                "Unknown expand option {other:?}: status or info"
                            )))
                        }
                    }
                }
                out.insert(name, Json::Object(entry));
            }
            ok(StatusCode::OK, Json::Object(out))
        }
        .await,
    )
}

async fn create(State(worker): State<Shared>, body: Bytes) -> Response {
    reply(
        async {
            let body = parse_body(&body)?;
            let config = config_map(body.get("config").unwrap_or(&Json::Null), "config")?;
            let name = match body.get("name") {
                Some(Json::String(n)) => n.clone(),
                _ => config
                    .get("name")
                    .cloned()
                    .ok_or_else(|| ApiError::bad_request("Connector name must be provided"))?,
            };
            let initial = match body.get("initial_state") {
                None | Some(Json::Null) => TargetState::Started,
                Some(Json::String(s)) => TargetState::from_initial(s).ok_or_else(|| {
                    ApiError::bad_request(format!("Invalid initial state {s:?}: RUNNING, PAUSED or STOPPED"))
                })?,
                Some(other) => return Err(ApiError::bad_request(format!("Invalid initial state {other}"))),
            };
            let info = worker.create(&name, config, initial).await?;
            let mut response = (StatusCode::CREATED, axum::Json(info.to_json())).into_response();
            if let Ok(location) = format!("/connectors/{name}").parse() {
                response.headers_mut().insert(header::LOCATION, location);
            }
            Ok(response)
        }
        .await,
    )
}

async fn info(State(worker): State<Shared>, Path(name): Path<String>) -> Response {
    reply(async { ok(StatusCode::OK, worker.info(&name).await?.to_json()) }.await)
}

async fn delete(State(worker): State<Shared>, Path(name): Path<String>) -> Response {
    reply(
        async {
            worker.delete(&name).await?;
            no_content()
        }
        .await,
    )
}

async fn config(State(worker): State<Shared>, Path(name): Path<String>) -> Response {
    reply(async { ok(StatusCode::OK, json!(worker.info(&name).await?.config)) }.await)
}

async fn put_config(State(worker): State<Shared>, Path(name): Path<String>, body: Bytes) -> Response {
    reply(
        async {
            let config = config_map(&parse_body(&body)?, "The connector config")?;
            let (created, info) = worker.put_config(&name, config).await?;
            ok(if created { StatusCode::CREATED } else { StatusCode::OK }, info.to_json())
        }
        .await,
    )
}

async fn patch_config(State(worker): State<Shared>, Path(name): Path<String>, body: Bytes) -> Response {
    reply(
        async {
            let body = parse_body(&body)?;
            let object =
                body.as_object().ok_or_else(|| ApiError::bad_request("The config patch must be a JSON object"))?;
            let mut patch = BTreeMap::new();
            for (k, v) in object {
                let value = match v {
                    Json::Null => None,
                    Json::String(s) => Some(s.clone()),
                    Json::Number(_) | Json::Bool(_) => Some(v.to_string()),
                    _ => return Err(ApiError::bad_request(format!("The value of {k:?} must be a string or null"))),
                };
                patch.insert(k.clone(), value);
            }
            ok(StatusCode::OK, worker.patch_config(&name, patch).await?.to_json())
        }
        .await,
    )
}

async fn status(State(worker): State<Shared>, Path(name): Path<String>) -> Response {
    reply(async { ok(StatusCode::OK, worker.status(&name).await?) }.await)
}

async fn restart(State(worker): State<Shared>, Path(name): Path<String>, RawQuery(query): RawQuery) -> Response {
    reply(
        async {
            let include_tasks = query_flag(&query, "includeTasks")?;
            let only_failed = query_flag(&query, "onlyFailed")?;
            let status = worker.restart(&name, include_tasks, only_failed).await?;
            if !include_tasks && !only_failed {
                return no_content();
            }
            ok(StatusCode::ACCEPTED, status)
        }
        .await,
    )
}

async fn pause(State(worker): State<Shared>, Path(name): Path<String>) -> Response {
    reply(
        async {
            worker.pause(&name).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        .await,
    )
}

async fn resume(State(worker): State<Shared>, Path(name): Path<String>) -> Response {
    reply(
        async {
            worker.resume(&name).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        .await,
    )
}

async fn stop(State(worker): State<Shared>, Path(name): Path<String>) -> Response {
    reply(
        async {
            worker.stop(&name).await?;
            no_content()
        }
        .await,
    )
}

async fn tasks(State(worker): State<Shared>, Path(name): Path<String>) -> Response {
    reply(async { ok(StatusCode::OK, worker.tasks(&name).await?) }.await)
}

fn task_id(task: &str) -> ApiResult<u32> {
    task.parse().map_err(|_| ApiError { status: 404, message: format!("Task id {task:?} is not a number") })
}

async fn task_status(State(worker): State<Shared>, Path((name, task)): Path<(String, String)>) -> Response {
    reply(async { ok(StatusCode::OK, worker.task_status(&name, task_id(&task)?).await?) }.await)
}

async fn restart_task(State(worker): State<Shared>, Path((name, task)): Path<(String, String)>) -> Response {
    reply(
        async {
            worker.restart_task(&name, task_id(&task)?).await?;
            no_content()
        }
        .await,
    )
}

async fn offsets(State(worker): State<Shared>, Path(name): Path<String>) -> Response {
    reply(async { ok(StatusCode::OK, worker.offsets(&name).await?) }.await)
}

async fn alter_offsets(State(worker): State<Shared>, Path(name): Path<String>, body: Bytes) -> Response {
    reply(async { ok(StatusCode::OK, worker.alter_offsets(&name, &parse_body(&body)?).await?) }.await)
}

async fn reset_offsets(State(worker): State<Shared>, Path(name): Path<String>) -> Response {
    reply(async { ok(StatusCode::OK, worker.reset_offsets(&name).await?) }.await)
}

async fn plugins(State(worker): State<Shared>, RawQuery(query): RawQuery) -> Response {
    reply(
        async {
            let connectors_only = match query_values(&query, "connectorsOnly").last() {
                None => true,
                Some(_) => query_flag(&query, "connectorsOnly")?,
            };
            let version = env!("CARGO_PKG_VERSION");
            let list: Vec<Json> = worker
                .plugins()
                .listing(connectors_only)
                .into_iter()
                .map(|(class, kind)| json!({"class": class, "type": kind, "version": version}))
                .collect();
            ok(StatusCode::OK, Json::Array(list))
        }
        .await,
    )
}

fn unknown_plugin(plugin: &str) -> ApiError {
    ApiError {
        status: 404,
        message: format!("Failed to find any class that implements Connector and which name matches {plugin}"),
    }
}

async fn plugin_config(State(worker): State<Shared>, Path(plugin): Path<String>) -> Response {
    reply(
        async {
            let found = worker.plugins().connector(&plugin).ok_or_else(|| unknown_plugin(&plugin))?;
            let instance = found.instantiate();
            // The keys every connector of its kind takes, then its own, as Kafka lists them.
            let def = crate::worker::connector_config_def(Some(found.kind())).merge(&instance.connector().config_def());
            let keys: Vec<Json> = def.keys().iter().map(|k| k.info()).collect();
            ok(StatusCode::OK, Json::Array(keys))
        }
        .await,
    )
}

async fn validate(State(worker): State<Shared>, Path(plugin): Path<String>, body: Bytes) -> Response {
    reply(
        async {
            let found = worker.plugins().connector(&plugin).ok_or_else(|| unknown_plugin(&plugin))?;
            let mut config = config_map(&parse_body(&body)?, "The connector config")?;
            match config.get("connector.class") {
                None => {
                    config.insert("connector.class".into(), found.class.clone());
                }
                Some(included)
                    if !found.is_named(included)
                        && worker.plugins().connector(included).map(|p| &p.class) != Some(&found.class) =>
                {
                    return Err(ApiError::bad_request(format!(
                        "Included connector type {included} does not match request type {plugin}"
                    )))
                }
                Some(_) => {}
            }
            ok(StatusCode::OK, worker.validate(&config)?)
        }
        .await,
    )
}
