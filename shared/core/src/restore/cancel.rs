//! A cancelled migration's task in flight: asked to stop, then its database dropped once it has.

use super::*;

impl<S: StatusStore, Q: JobQueue, T: RestoreTarget, O: ObjectReader> Worker<S, Q, T, O> {
    /// A cancelled migration's claim without a task: if the target has the task, record it and
    /// poll it (the poll stops it and drops the database); if not, let go of the claim and drop
    /// whatever database is left.
    pub(super) async fn settle_cancelled(
        &self,
        name: &DatabaseName,
        step: &Step,
        task_name: &str,
        task_floor: Option<i64>,
        now: OffsetDateTime,
    ) -> Result<WorkOutcome, WorkError> {
        let request = self.request(name, step).await?;
        let found = match self.target.find_task(&request, task_name).await? {
            Some(TaskId::Rds(id)) if task_floor.is_some_and(|floor| id <= floor) => None,
            found => found,
        };
        match found {
            Some(task) => {
                self.update_migration(name, now, |m| {
                    m.in_flight
                        .as_mut()
                        .filter(|f| f.task_name == task_name && f.task.is_none())
                        .map(|f| f.task = Some(task.clone()))
                })
                .await?;
                self.poll_later(name, task_name, self.config.poll_interval)
                    .await?;
            }
            None => return self.let_go_cancelled(name, task_name, now).await,
        }
        Ok(WorkOutcome::Idle {
            migration: name.to_owned(),
            state: MigrationState::Cancelled,
        })
    }

    /// The end of a cancelled migration's task (stopped, or never started): drop the
    /// half-restored database, end its restoring files, let go of the task `task_name`.
    pub(super) async fn let_go_cancelled(
        &self,
        name: &DatabaseName,
        task_name: &str,
        now: OffsetDateTime,
    ) -> Result<WorkOutcome, WorkError> {
        crate::cutover::drop_restoring(&self.target, name).await?;
        crate::cutover::end_restoring_files(&self.store, name, now).await?;
        self.update_migration(name, now, |m| {
            m.in_flight
                .as_ref()
                .is_some_and(|f| f.task_name == task_name)
                .then(|| m.in_flight = None)
        })
        .await?;
        Ok(WorkOutcome::Idle {
            migration: name.to_owned(),
            state: MigrationState::Cancelled,
        })
    }

    /// A migration cancelled while its task ran: once the target has stopped the task, drop the
    /// half-restored database and let go of the task; until then, ask again and poll later.
    pub(super) async fn finish_cancel(
        &self,
        name: &DatabaseName,
        task_name: &str,
        task: &TaskId,
        now: OffsetDateTime,
    ) -> Result<WorkOutcome, WorkError> {
        let database = name.clone();
        if let TaskStatus::Running { .. } = self.target.poll(&database, task).await? {
            // A task submitted just as the migration was cancelled was never asked to stop.
            if let Err(e) = self.target.cancel_task(task).await {
                tracing::info!(migration = %name, %task, error.message = %e,
                    "asking the target again to stop the cancelled migration's task");
            }
            self.poll_later(name, task_name, self.config.poll_interval)
                .await?;
            return Ok(WorkOutcome::Idle {
                migration: name.to_owned(),
                state: MigrationState::Cancelled,
            });
        }
        self.let_go_cancelled(name, task_name, now).await
    }
}
