//! `bakdrop status|complete|cancel|reset --function F`: a deployed stack's functions invoked
//! through the AWS SDK (Lambda Invoke, `RequestResponse`) with the caller's credentials. Complete and
//! Cancel then run where the stack runs them (inside its VPC, with its secret), so the machine
//! running `bakdrop` needs no route to the target SQL Server. With `AWS_ENDPOINT_URL_LAMBDA`
//! (or `AWS_ENDPOINT_URL`) set, the local endpoint's functions are invoked instead.

use std::process::ExitCode;

use anyhow::Context;
use aws_sdk_lambda::primitives::Blob;
use bakdrop_core::cutover::CompleteRequest;
use bakdrop_core::model::status::Reason;

use crate::manage::CutoverAction;
use serde_json::{json, Value};

/// What a function answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The function's result.
    Ok(Value),
    /// The function reported an error: its `errorType` (stable, e.g. `NotSynchronizing`) and
    /// `errorMessage`.
    Refused { error_type: String, message: String },
}

/// Invokes `function` with `payload` and waits for its answer.
///
/// # Errors
/// When the invoke itself fails (no such function, no permission, network) or the answer is not
/// JSON.
pub async fn invoke(function: &str, payload: &Value) -> anyhow::Result<Answer> {
    let sdk = bakdrop_aws::config::load().await;
    let client = aws_sdk_lambda::Client::new(&sdk);
    let out = client
        .invoke()
        .function_name(function)
        .payload(Blob::new(serde_json::to_vec(payload)?))
        .send()
        .await
        .map_err(aws_sdk_lambda::Error::from)
        .with_context(|| format!("invoking function {function}"))?;
    let body = out.payload().map(Blob::as_ref).unwrap_or_default();
    let value: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(body).with_context(|| {
            format!(
                "function {function} answered something that is not JSON: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            )
        })?
    };
    Ok(match out.function_error() {
        None => Answer::Ok(value),
        Some(_) => Answer::Refused {
            error_type: value["errorType"].as_str().unwrap_or("Unknown").to_owned(),
            message: value["errorMessage"]
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned),
        },
    })
}

/// The complete-migration function's payload.
pub fn cutover_payload(request: &CompleteRequest, action: CutoverAction) -> Value {
    match action {
        CutoverAction::Cancel => json!({"action": "cancel", "database": request.database}),
        CutoverAction::Reset => json!({"action": "reset", "database": request.database}),
        CutoverAction::Disarm => json!({"action": "disarm", "database": request.database}),
        CutoverAction::Arm => json!({
            "action": "arm",
            "database": request.database,
            "last_backup": request.last_backup,
            "require_tail_log": request.require_tail_log,
        }),
        CutoverAction::Complete => json!({
            "action": "complete",
            "database": request.database,
            "last_backup": request.last_backup,
            "require_tail_log": request.require_tail_log,
        }),
    }
}

/// `bakdrop complete|cancel|reset --function F`: exit status 1 when refused (the function's
/// error type and message are printed).
///
/// # Errors
/// When the function cannot be invoked.
pub async fn cutover(
    function: &str,
    request: &CompleteRequest,
    action: CutoverAction,
) -> anyhow::Result<ExitCode> {
    match invoke(function, &cutover_payload(request, action)).await? {
        Answer::Ok(value) => {
            let state = value["state"]
                .as_str()
                .unwrap_or("(no state in the answer)");
            crate::outln!("{}: {state}", request.database);
            Ok(ExitCode::SUCCESS)
        }
        Answer::Refused {
            error_type,
            message,
        } => {
            eprintln!("bakdrop: refused ({error_type}): {message}");
            Ok(ExitCode::from(1))
        }
    }
}

/// `bakdrop status --function F`: the migration-status function's document for one database
/// (as JSON, or its summary line and allowed actions), or every page of its list of migrations.
/// Exit status 1 when the database is unknown.
///
/// # Errors
/// When the function cannot be invoked or answers an unexpected shape.
pub async fn status(
    function: &str,
    database: Option<&str>,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let Some(database) = database else {
        return list(function, as_json).await;
    };
    let report = match invoke(function, &json!({ "database": database })).await? {
        Answer::Ok(value) => value,
        Answer::Refused {
            error_type,
            message,
        } => {
            eprintln!("bakdrop: {error_type}: {message}");
            return Ok(ExitCode::from(1));
        }
    };
    if as_json {
        crate::outln!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    crate::outln!(
        "== {} [{}]: {}",
        report["database"].as_str().unwrap_or(database),
        report["state"]
            .as_str()
            .unwrap_or("no migration (no file accepted)"),
        report["summary"].as_str().unwrap_or_default()
    );
    if let Some(e) = report.get("last_error").filter(|e| !e.is_null()) {
        match serde_json::from_value::<Reason>(e.clone()) {
            Ok(reason) => crate::outln!("  last error: {reason}"),
            Err(_) => crate::outln!("  last error: {e}"),
        }
    }
    let actions: Vec<&str> = report["actions"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !actions.is_empty() {
        crate::outln!("  you may now: {}", actions.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(function: &str, as_json: bool) -> anyhow::Result<ExitCode> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let payload = match &after {
            Some(a) => json!({ "after": a }),
            None => json!({}),
        };
        let page = match invoke(function, &payload).await? {
            Answer::Ok(value) => value,
            Answer::Refused {
                error_type,
                message,
            } => anyhow::bail!("function {function} refused to list: {error_type}: {message}"),
        };
        let migrations = page["migrations"]
            .as_array()
            .with_context(|| format!("function {function} answered no list of migrations"))?;
        all.extend(migrations.iter().cloned());
        match page["next"].as_str() {
            Some(next) if after.as_deref() != Some(next) => after = Some(next.to_owned()),
            _ => break,
        }
    }
    if as_json {
        crate::outln!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        for m in &all {
            crate::outln!(
                "{:<40} {:<14} {}",
                m["database"].as_str().unwrap_or("?"),
                m["state"].as_str().unwrap_or("?"),
                m["updated_at"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_payload_bakdrop_sends_is_one_the_function_takes() {
        let request = CompleteRequest {
            database: "Sales".into(),
            last_backup: Some("Sales_log_0930.trn".into()),
            require_tail_log: true,
        };
        for action in [
            CutoverAction::Complete,
            CutoverAction::Cancel,
            CutoverAction::Reset,
        ] {
            let payload = cutover_payload(&request, action);
            let invoke = complete_migration::handler::Invoke::parse(payload.clone())
                .unwrap_or_else(|e| panic!("{payload}: {e}"));
            assert_eq!(invoke.request.database, "Sales");
        }
        let complete = complete_migration::handler::Invoke::parse(cutover_payload(
            &request,
            CutoverAction::Complete,
        ))
        .expect("complete");
        assert_eq!(complete.request, request);
    }
}
