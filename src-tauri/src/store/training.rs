//! Datasets imported for fine-tuning, training runs and their metrics.

use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::audit::{self, AuditAction};
use super::error::{Result, StoreError};
use super::registry::AdapterKind;
use super::time::now_ms;
use super::Store;

/// An imported dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dataset {
    /// Identifier.
    pub id: i64,
    /// Name shown to the user.
    pub name: String,
    /// Where it was imported from.
    pub source: Option<String>,
    /// Its format (`csv`, `jsonl`, ...).
    pub format: String,
    /// Number of records.
    pub records: i64,
    /// Whether it was de-identified.
    pub deidentified: bool,
    /// Checksum of the imported data.
    pub sha256: Option<String>,
    /// Import time, Unix milliseconds.
    pub created_at: i64,
}

/// A dataset to record.
#[derive(Debug, Clone, Default)]
pub struct NewDataset {
    /// Name.
    pub name: String,
    /// Where it came from.
    pub source: Option<String>,
    /// Format.
    pub format: String,
    /// Number of records.
    pub records: i64,
    /// Whether it was de-identified.
    pub deidentified: bool,
    /// Checksum.
    pub sha256: Option<String>,
}

/// State of a training run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainingStatus {
    /// Waiting to start.
    Queued,
    /// Training.
    Running,
    /// Paused by the user (resumable from a checkpoint).
    Paused,
    /// Finished.
    Completed,
    /// Failed (see `error`).
    Failed,
    /// Stopped by the user.
    Cancelled,
    /// The app stopped while it was running.
    Interrupted,
}

impl TrainingStatus {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            TrainingStatus::Queued => "queued",
            TrainingStatus::Running => "running",
            TrainingStatus::Paused => "paused",
            TrainingStatus::Completed => "completed",
            TrainingStatus::Failed => "failed",
            TrainingStatus::Cancelled => "cancelled",
            TrainingStatus::Interrupted => "interrupted",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => TrainingStatus::Queued,
            "running" => TrainingStatus::Running,
            "paused" => TrainingStatus::Paused,
            "completed" => TrainingStatus::Completed,
            "failed" => TrainingStatus::Failed,
            "cancelled" => TrainingStatus::Cancelled,
            "interrupted" => TrainingStatus::Interrupted,
            _ => return None,
        })
    }

    fn is_final(self) -> bool {
        matches!(self, TrainingStatus::Completed | TrainingStatus::Failed | TrainingStatus::Cancelled)
    }
}

/// A training run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainingRun {
    /// Identifier.
    pub id: i64,
    /// The dataset it trains on.
    pub dataset_id: Option<i64>,
    /// The base model.
    pub base_model_id: Option<i64>,
    /// LoRA or P-tuning.
    pub method: AdapterKind,
    /// Hyper-parameters and options.
    pub config: serde_json::Value,
    /// State.
    pub status: TrainingStatus,
    /// Why it failed.
    pub error: Option<String>,
    /// Where its adapter is written.
    pub output_path: Option<String>,
    /// Creation time.
    pub created_at: i64,
    /// Start time.
    pub started_at: Option<i64>,
    /// End time.
    pub finished_at: Option<i64>,
}

/// One metrics point of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingMetric {
    /// Optimizer step.
    pub step: i64,
    /// Epoch (fractional).
    pub epoch: Option<f64>,
    /// Training loss.
    pub loss: Option<f64>,
    /// Evaluation loss.
    pub eval_loss: Option<f64>,
    /// Learning rate.
    pub learning_rate: Option<f64>,
}

impl Store {
    /// Records an imported dataset (audited as an import).
    pub fn add_dataset(&self, d: &NewDataset) -> Result<Dataset> {
        let now = now_ms();
        let tx = self.conn.unchecked_transaction()?;
        tx.execute(
            "INSERT INTO datasets (name, source, format, records, deidentified, sha256, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![d.name, d.source, d.format, d.records, d.deidentified, d.sha256, now],
        )?;
        let id = tx.last_insert_rowid();
        audit::record(
            &tx,
            AuditAction::Import,
            &format!("dataset {id}"),
            &serde_json::json!({ "name": d.name, "source": d.source, "records": d.records, "deidentified": d.deidentified }),
        )?;
        tx.commit()?;
        Ok(Dataset {
            id,
            name: d.name.clone(),
            source: d.source.clone(),
            format: d.format.clone(),
            records: d.records,
            deidentified: d.deidentified,
            sha256: d.sha256.clone(),
            created_at: now,
        })
    }

    /// All datasets, newest first.
    pub fn list_datasets(&self) -> Result<Vec<Dataset>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, name, source, format, records, deidentified, sha256, created_at FROM datasets ORDER BY id DESC",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(Dataset {
                id: r.get(0)?,
                name: r.get(1)?,
                source: r.get(2)?,
                format: r.get(3)?,
                records: r.get(4)?,
                deidentified: r.get(5)?,
                sha256: r.get(6)?,
                created_at: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Deletes a dataset record (audited); runs keep a null dataset.
    pub fn delete_dataset(&self, id: i64) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        if tx.execute("DELETE FROM datasets WHERE id = ?1", [id])? == 0 {
            return Err(StoreError::Invalid(format!("dataset {id} does not exist")));
        }
        audit::record(&tx, AuditAction::Delete, &format!("dataset {id}"), &serde_json::json!({}))?;
        tx.commit()?;
        Ok(())
    }

    /// Creates a queued training run (audited).
    pub fn create_training_run(
        &self,
        dataset_id: Option<i64>,
        base_model_id: Option<i64>,
        method: AdapterKind,
        config: &serde_json::Value,
    ) -> Result<TrainingRun> {
        let now = now_ms();
        let tx = self.conn.unchecked_transaction()?;
        tx.execute(
            "INSERT INTO training_runs (dataset_id, base_model_id, method, config_json, status, created_at)
             VALUES (?1, ?2, ?3, ?4, 'queued', ?5)",
            params![dataset_id, base_model_id, method.as_str(), serde_json::to_string(config)?, now],
        )?;
        let id = tx.last_insert_rowid();
        audit::record(&tx, AuditAction::Training, &format!("training run {id}"), &serde_json::json!({ "status": "queued" }))?;
        tx.commit()?;
        self.training_run(id)
    }

    /// Moves a run to `status` (audited); `error` for failures, `output_path` when known.
    pub fn set_training_status(
        &self,
        id: i64,
        status: TrainingStatus,
        error: Option<&str>,
        output_path: Option<&str>,
    ) -> Result<()> {
        let now = now_ms();
        let tx = self.conn.unchecked_transaction()?;
        let n = tx.execute(
            "UPDATE training_runs SET status = ?1, error = coalesce(?2, error), output_path = coalesce(?3, output_path),
                    started_at = CASE WHEN ?1 = 'running' AND started_at IS NULL THEN ?4 ELSE started_at END,
                    finished_at = CASE WHEN ?5 THEN ?4 ELSE finished_at END
             WHERE id = ?6",
            params![status.as_str(), error, output_path, now, status.is_final(), id],
        )?;
        if n == 0 {
            return Err(StoreError::Invalid(format!("training run {id} does not exist")));
        }
        audit::record(&tx, AuditAction::Training, &format!("training run {id}"), &serde_json::json!({ "status": status.as_str() }))?;
        tx.commit()?;
        Ok(())
    }

    /// Records (or replaces) the metrics of one step.
    pub fn add_training_metric(&self, run_id: i64, m: &TrainingMetric) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO training_metrics (run_id, step, epoch, loss, eval_loss, learning_rate, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![run_id, m.step, m.epoch, m.loss, m.eval_loss, m.learning_rate, now_ms()])?;
        Ok(())
    }

    /// The metrics of a run, by step.
    pub fn training_metrics(&self, run_id: i64) -> Result<Vec<TrainingMetric>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT step, epoch, loss, eval_loss, learning_rate FROM training_metrics WHERE run_id = ?1 ORDER BY step",
        )?;
        let rows = stmt.query_map([run_id], |r| {
            Ok(TrainingMetric { step: r.get(0)?, epoch: r.get(1)?, loss: r.get(2)?, eval_loss: r.get(3)?, learning_rate: r.get(4)? })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// One training run.
    pub fn training_run(&self, id: i64) -> Result<TrainingRun> {
        self.conn
            .query_row(
                "SELECT id, dataset_id, base_model_id, method, config_json, status, error, output_path,
                        created_at, started_at, finished_at FROM training_runs WHERE id = ?1",
                [id],
                row_to_run,
            )
            .optional()?
            .ok_or_else(|| StoreError::Invalid(format!("training run {id} does not exist")))
    }

    /// All training runs, newest first.
    pub fn list_training_runs(&self) -> Result<Vec<TrainingRun>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, dataset_id, base_model_id, method, config_json, status, error, output_path,
                    created_at, started_at, finished_at FROM training_runs ORDER BY id DESC",
        )?;
        let rows = stmt.query_map([], row_to_run)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

fn row_to_run(r: &rusqlite::Row<'_>) -> rusqlite::Result<TrainingRun> {
    let method: String = r.get(3)?;
    let config: String = r.get(4)?;
    let status: String = r.get(5)?;
    Ok(TrainingRun {
        id: r.get(0)?,
        dataset_id: r.get(1)?,
        base_model_id: r.get(2)?,
        method: AdapterKind::parse(&method).unwrap_or(AdapterKind::Lora),
        config: serde_json::from_str(&config).unwrap_or(serde_json::Value::String(config)),
        status: TrainingStatus::parse(&status).unwrap_or(TrainingStatus::Interrupted),
        error: r.get(6)?,
        output_path: r.get(7)?,
        created_at: r.get(8)?,
        started_at: r.get(9)?,
        finished_at: r.get(10)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{reopen, temp_store};

    #[test]
    fn store_training_runs_and_metrics() {
        let (dir, store) = temp_store();
        let d = store
            .add_dataset(&NewDataset { name: "hospital dialogues".into(), format: "csv".into(), records: 1200, deidentified: true, ..Default::default() })
            .unwrap();
        let run = store.create_training_run(Some(d.id), None, AdapterKind::Lora, &serde_json::json!({"rank": 8})).unwrap();
        assert_eq!(run.status, TrainingStatus::Queued);
        store.set_training_status(run.id, TrainingStatus::Running, None, Some("adapters/run1")).unwrap();
        for step in 0..3 {
            store.add_training_metric(run.id, &TrainingMetric { step, epoch: Some(0.1 * step as f64), loss: Some(2.0 - step as f64 * 0.5), eval_loss: None, learning_rate: Some(2e-4) }).unwrap();
        }
        let m = store.training_metrics(run.id).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[2].loss, Some(1.0));
        let r = store.training_run(run.id).unwrap();
        assert_eq!(r.status, TrainingStatus::Running);
        assert!(r.started_at.is_some());
        assert_eq!(r.config["rank"], 8);
        drop(store);
        // A run that was running when the app stopped is marked interrupted.
        let store = reopen(&dir);
        assert_eq!(store.training_run(run.id).unwrap().status, TrainingStatus::Interrupted);
        store.delete_dataset(d.id).unwrap();
        assert_eq!(store.training_run(run.id).unwrap().dataset_id, None);
        assert_eq!(store.list_datasets().unwrap().len(), 0);
        assert!(store.audit_log(20).unwrap().iter().filter(|e| e.action == "training").count() >= 2);
    }
}
