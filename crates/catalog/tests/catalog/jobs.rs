//! The job queue: claiming, scheduling stable series, dead workers, leases.

use super::*;

both!(job_queue);
both!(stable_series_scheduling);
both!(two_schedulers_schedule_an_arrival_once);
both!(dead_workers_use_their_attempts);
both!(failed_workflow_jobs_fail_their_run);
both!(lease_renewal);
both!(queue_figures);

use radport_catalog::JobKind;

fn job(kind: JobKind, series: &str, max_attempts: i64) -> radport_catalog::NewJob {
    radport_catalog::NewJob {
        kind,
        series_uid: Some(series.to_string()),
        payload: serde_json::json!({"n": 1}),
        max_attempts,
    }
}

async fn job_queue(url: &str) {
    use radport_catalog::{JobFilter, JobState};
    let c = Catalog::connect(url).await.expect("connect");
    let lease = Duration::from_secs(60);
    let id = c
        .enqueue_job(&job(JobKind::Thumbnail, "9.1", 2))
        .await
        .expect("enqueue");
    assert!(id.is_some());
    // A second queued job of the same kind for the same series stands for the first.
    assert_eq!(
        c.enqueue_job(&job(JobKind::Thumbnail, "9.1", 2))
            .await
            .expect("enqueue"),
        None
    );
    assert!(c
        .enqueue_job(&job(JobKind::Validate, "9.1", 2))
        .await
        .expect("enqueue")
        .is_some());

    // Claims respect kinds; a claimed job is not claimed twice.
    let claimed = c
        .claim_job(&[JobKind::Thumbnail], "w1", lease)
        .await
        .expect("claim")
        .expect("a job");
    assert_eq!(claimed.kind, JobKind::Thumbnail);
    assert_eq!(claimed.state, JobState::Running);
    assert_eq!(claimed.attempts, 1);
    assert_eq!(claimed.payload["n"], 1);
    assert!(c
        .claim_job(&[JobKind::Thumbnail], "w2", lease)
        .await
        .expect("claim")
        .is_none());
    // While it runs, new arrivals may queue another one for the same series.
    assert!(c
        .enqueue_job(&job(JobKind::Thumbnail, "9.1", 2))
        .await
        .expect("enqueue")
        .is_some());

    // Failure: back to queued with a backoff and the error kept, then failed for good.
    let state = c
        .fail_job(&claimed.id, "w1", "decoder exploded")
        .await
        .expect("fail");
    assert_eq!(state, JobState::Queued);
    let listed = c
        .list_jobs(&JobFilter {
            kind: Some(JobKind::Thumbnail),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(listed.total, 2);
    let failed_once = listed
        .items
        .iter()
        .find(|j| j.id == claimed.id)
        .expect("listed");
    assert_eq!(failed_once.last_error.as_deref(), Some("decoder exploded"));
    assert!(
        failed_once.run_after > failed_once.updated_at,
        "retry waits"
    );
    // Not due yet: the other (new) thumbnail job is claimed instead.
    let other = c
        .claim_job(&[JobKind::Thumbnail], "w2", lease)
        .await
        .expect("claim")
        .expect("job");
    assert_ne!(other.id, claimed.id);
    c.complete_job(&other.id, "w2").await.expect("complete");

    // A worker whose lease ran out loses the job; completing it then changes nothing.
    let v = c
        .claim_job(&[JobKind::Validate], "w3", Duration::from_millis(1))
        .await
        .expect("claim")
        .expect("job");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let again = c
        .claim_job(&[JobKind::Validate], "w4", lease)
        .await
        .expect("claim")
        .expect("expired job");
    assert_eq!(again.id, v.id);
    assert_eq!(again.attempts, 2);
    c.complete_job(&v.id, "w3").await.expect("stale complete");
    let state_of = |jobs: &radport_catalog::JobPage, id: &str| {
        jobs.items.iter().find(|j| j.id == id).map(|j| j.state)
    };
    let all_jobs = c.list_jobs(&JobFilter::default()).await.expect("list");
    assert_eq!(
        state_of(&all_jobs, &v.id),
        Some(JobState::Running),
        "w3 no longer holds it"
    );
    c.complete_job(&v.id, "w4").await.expect("complete");

    // Restart: running jobs go back to the queue.
    let r = c
        .enqueue_job(&job(JobKind::Thumbnail, "9.2", 3))
        .await
        .expect("enqueue")
        .expect("id");
    let _ = c
        .claim_job(&[JobKind::Thumbnail], "dead", lease)
        .await
        .expect("claim")
        .expect("job");
    assert_eq!(c.requeue_running_jobs().await.expect("requeue").requeued, 1);
    let after = c
        .claim_job(&[JobKind::Thumbnail], "w5", lease)
        .await
        .expect("claim")
        .expect("job");
    assert_eq!(after.id, r);

    // Filters.
    let succeeded = c
        .list_jobs(&JobFilter {
            state: Some(JobState::Succeeded),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(succeeded.total, 2);
    let by_series = c
        .list_jobs(&JobFilter {
            series: Some("9.2".into()),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(by_series.total, 1);
    // max_attempts reached: failed.
    let f = c
        .enqueue_job(&job(JobKind::Verify, "9.3", 1))
        .await
        .expect("enqueue")
        .expect("id");
    let j = c
        .claim_job(&[JobKind::Verify], "w6", lease)
        .await
        .expect("claim")
        .expect("job");
    assert_eq!(j.id, f);
    assert_eq!(
        c.fail_job(&f, "w6", "boom").await.expect("fail"),
        JobState::Failed
    );
    assert!(c
        .claim_job(&[JobKind::Verify], "w6", lease)
        .await
        .expect("claim")
        .is_none());
}

/// Two nodes' schedulers on one catalog, while workers claim and finish jobs as fast as they
/// can: every arrival gets exactly one job per kind (a scheduler that read a series as due
/// must not schedule it again once the other node did and its job already started).
async fn two_schedulers_schedule_an_arrival_once(url: &str) {
    const SERIES: usize = 40;
    let a = Catalog::connect(url).await.expect("connect a");
    let b = Catalog::connect(url).await.expect("connect b");
    let kinds = [JobKind::Thumbnail, JobKind::Validate];
    for i in 0..SERIES {
        record(
            &a,
            &rec("13.1", &format!("13.1.{i}"), &format!("13.1.{i}.1")),
            &route("admin", "d"),
            DuplicatePolicy::KeepFirst,
        )
        .await;
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in [a.clone(), b.clone()] {
        let scheduler_stop = stop.clone();
        let scheduler = c.clone();
        tasks.push(tokio::spawn(async move {
            while !scheduler_stop.load(std::sync::atomic::Ordering::Relaxed) {
                scheduler
                    .schedule_stable_series(Duration::ZERO, &kinds, 3)
                    .await
                    .expect("schedule");
            }
        }));
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(j) = c
                    .claim_job(&kinds, "w", Duration::from_secs(60))
                    .await
                    .expect("claim")
                {
                    c.complete_job(&j.id, "w").await.expect("complete");
                } else {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        t.await.expect("task");
    }
    let jobs = a
        .list_jobs(&radport_catalog::JobFilter {
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(
        jobs.total as usize,
        SERIES * kinds.len(),
        "one job per kind and series"
    );
}

async fn stable_series_scheduling(url: &str) {
    let c = Catalog::connect(url).await.expect("connect");
    let kinds = [JobKind::Thumbnail, JobKind::Validate];
    record(
        &c,
        &rec("8.1", "8.1.1", "8.1.1.1"),
        &route("admin", "d"),
        DuplicatePolicy::KeepFirst,
    )
    .await;
    // Not idle long enough yet.
    let none = c
        .schedule_stable_series(Duration::from_secs(3600), &kinds, 3)
        .await
        .expect("schedule");
    assert!(none.is_empty());
    // Idle (zero idle time): scheduled once, with one job per kind.
    let due = c
        .schedule_stable_series(Duration::ZERO, &kinds, 3)
        .await
        .expect("schedule");
    assert_eq!(due, ["8.1.1"]);
    let again = c
        .schedule_stable_series(Duration::ZERO, &kinds, 3)
        .await
        .expect("schedule");
    assert!(again.is_empty(), "not scheduled twice for the same arrival");
    let jobs = c
        .list_jobs(&radport_catalog::JobFilter::default())
        .await
        .expect("list");
    assert_eq!(jobs.total, 2);
    // A late instance re-opens the series; its queued jobs still stand for it.
    tokio::time::sleep(Duration::from_millis(5)).await;
    record(
        &c,
        &rec("8.1", "8.1.1", "8.1.1.2"),
        &route("admin", "d"),
        DuplicatePolicy::KeepFirst,
    )
    .await;
    let reopened = c
        .schedule_stable_series(Duration::ZERO, &kinds, 3)
        .await
        .expect("schedule");
    assert_eq!(reopened, ["8.1.1"]);
    assert_eq!(
        c.list_jobs(&radport_catalog::JobFilter::default())
            .await
            .expect("list")
            .total,
        2
    );
    // Once those ran, a further arrival brings new jobs.
    for kind in kinds {
        let j = c
            .claim_job(&[kind], "w", Duration::from_secs(60))
            .await
            .expect("claim")
            .expect("job");
        c.complete_job(&j.id, "w").await.expect("complete");
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    record(
        &c,
        &rec("8.1", "8.1.1", "8.1.1.3"),
        &route("admin", "d"),
        DuplicatePolicy::KeepFirst,
    )
    .await;
    assert_eq!(
        c.schedule_stable_series(Duration::ZERO, &kinds, 3)
            .await
            .expect("schedule"),
        ["8.1.1"]
    );
    assert_eq!(
        c.list_jobs(&radport_catalog::JobFilter::default())
            .await
            .expect("list")
            .total,
        4
    );
}

/// A worker that dies (the process restarts, or its lease runs out) has used its attempt: the
/// job is queued again while it has attempts left, then parked `failed` with the reason, and
/// never claimed again — restart after restart.
async fn dead_workers_use_their_attempts(url: &str) {
    use radport_catalog::{JobFilter, JobState, Reaped};
    let c = Catalog::connect(url).await.expect("connect");
    let lease = Duration::from_secs(60);
    let id = c
        .enqueue_job(&job(JobKind::Thumbnail, "20.1", 2))
        .await
        .expect("enqueue")
        .expect("id");
    let get = |id: String| {
        let c = c.clone();
        async move { c.get_job(&id).await.expect("get").expect("job") }
    };
    // Attempt 1 dies with the process.
    let first = c
        .claim_job(&[JobKind::Thumbnail], "dead", lease)
        .await
        .expect("claim")
        .expect("job");
    assert_eq!(first.attempts, 1);
    assert_eq!(
        c.requeue_running_jobs().await.expect("requeue"),
        Reaped {
            requeued: 1,
            failed: 0
        }
    );
    let j = get(id.clone()).await;
    assert_eq!(j.state, JobState::Queued);
    assert_eq!(
        j.last_error.as_deref(),
        Some("worker died during attempt 1 (process restarted)")
    );
    // Attempt 2, its last, dies too: failed, not queued.
    let second = c
        .claim_job(&[JobKind::Thumbnail], "dead", lease)
        .await
        .expect("claim")
        .expect("job");
    assert_eq!((second.id.as_str(), second.attempts), (id.as_str(), 2));
    assert_eq!(
        c.requeue_running_jobs().await.expect("requeue"),
        Reaped {
            requeued: 0,
            failed: 1
        }
    );
    let j = get(id.clone()).await;
    assert_eq!(j.state, JobState::Failed);
    assert_eq!(
        j.last_error.as_deref(),
        Some("worker died during attempt 2 (process restarted)")
    );
    assert!(j.finished_at.is_some());
    // Further restarts change nothing, and nobody claims it.
    assert_eq!(
        c.requeue_running_jobs().await.expect("requeue"),
        Reaped::default()
    );
    assert!(c
        .claim_job(&[JobKind::Thumbnail], "w", lease)
        .await
        .expect("claim")
        .is_none());

    // Lease expiry: the same, found by any worker's claim (even of another kind).
    let once = c
        .enqueue_job(&job(JobKind::Validate, "20.2", 1))
        .await
        .expect("enqueue")
        .expect("id");
    c.claim_job(&[JobKind::Validate], "lost", Duration::from_millis(1))
        .await
        .expect("claim")
        .expect("job");
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(c
        .claim_job(&[JobKind::Thumbnail], "w", lease)
        .await
        .expect("claim")
        .is_none());
    let j = get(once.clone()).await;
    assert_eq!(j.state, JobState::Failed);
    assert_eq!(
        j.last_error.as_deref(),
        Some("worker died during attempt 1 (lease expired)")
    );
    // Its worker, back from the dead, cannot record anything any more.
    c.complete_job(&once, "lost").await.expect("complete");
    assert_eq!(
        c.fail_job(&once, "lost", "late").await.expect("fail"),
        JobState::Running,
        "not the worker's any more"
    );
    assert_eq!(get(once).await.state, JobState::Failed);
    let failed = c
        .list_jobs(&JobFilter {
            state: Some(JobState::Failed),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(failed.total, 2);
}

/// A workflow job that fails for good leaves its run failed with the reason; a retried
/// attempt leaves a line in the run's log.
async fn failed_workflow_jobs_fail_their_run(url: &str) {
    use radport_catalog::{JobState, NewJob};
    let c = Catalog::connect(url).await.expect("connect");
    let lease = Duration::from_secs(60);
    let new_run = |id: &'static str| {
        let c = c.clone();
        async move {
            c.create_workflow_run(id, "import", &serde_json::json!({}))
                .await
                .expect("run");
            c.enqueue_job(&NewJob {
                kind: JobKind::Workflow,
                series_uid: None,
                payload: serde_json::json!({ "run": id }),
                max_attempts: 2,
            })
            .await
            .expect("enqueue")
            .expect("id")
        }
    };
    // Attempt 1 fails (the worker reports it), attempt 2 dies with the process.
    let id = new_run("run1").await;
    c.claim_job(&[JobKind::Workflow], "w", lease)
        .await
        .expect("claim")
        .expect("job");
    assert_eq!(
        c.fail_job(&id, "w", "killed by signal 9 (SIGKILL)")
            .await
            .expect("fail"),
        JobState::Queued
    );
    let run = c.get_workflow_run("run1").await.expect("get").expect("run");
    assert_eq!(run.state, radport_catalog::RunState::Queued);
    assert_eq!(
        run.log.last().map(String::as_str),
        Some("attempt 1 failed: killed by signal 9 (SIGKILL); it will be retried")
    );
    // Reaping at a restart leaves queued jobs (and their backoff) alone.
    c.requeue_running_jobs().await.expect("requeue");
    let job = c.get_job(&id).await.expect("get").expect("job");
    assert_eq!(job.state, JobState::Queued);
    assert!(job.run_after > job.updated_at, "backoff kept");
    // Attempt 2 succeeds (the run's own state is the workflow's business then).
    tokio::time::sleep(retry_wait(&job.run_after)).await;
    let retry = c
        .claim_job(&[JobKind::Workflow], "w", lease)
        .await
        .expect("claim")
        .expect("retry due");
    assert_eq!((retry.id.as_str(), retry.attempts), (id.as_str(), 2));
    c.complete_job(&id, "w").await.expect("complete");

    let id2 = new_run("run2").await;
    let claimed = c
        .claim_job(&[JobKind::Workflow], "w", lease)
        .await
        .expect("claim")
        .expect("job");
    assert_eq!(claimed.id, id2);
    c.fail_job(&id2, "w", "out of memory").await.expect("fail");
    // Make the retry due now, claim it, and let the process "die".
    let due = c.get_job(&id2).await.expect("get").expect("job");
    assert_eq!(due.state, JobState::Queued);
    tokio::time::sleep(retry_wait(&due.run_after)).await;
    let again = c
        .claim_job(&[JobKind::Workflow], "w", lease)
        .await
        .expect("claim")
        .expect("retry due");
    assert_eq!((again.id.as_str(), again.attempts), (id2.as_str(), 2));
    let reaped = c.requeue_running_jobs().await.expect("requeue");
    assert_eq!(reaped.failed, 1);
    let run = c.get_workflow_run("run2").await.expect("get").expect("run");
    assert_eq!(run.state, radport_catalog::RunState::Failed);
    assert!(run.finished_at.is_some());
    assert_eq!(
        run.log.last().map(String::as_str),
        Some("failed: worker died during attempt 2 (process restarted)")
    );

    // A run that succeeded stays so even if its job's bookkeeping fails afterwards.
    let id3 = new_run("run3").await;
    let mut run = c.get_workflow_run("run3").await.expect("get").expect("run");
    tokio::time::sleep(retry_wait(&run.created_at)).await;
    c.claim_job(&[JobKind::Workflow], "w", lease)
        .await
        .expect("claim")
        .expect("job");
    run.state = radport_catalog::RunState::Succeeded;
    c.update_workflow_run(&run).await.expect("update");
    let _ = c.fail_job(&id3, "w", "late").await.expect("fail");
    let run = c.get_workflow_run("run3").await.expect("get").expect("run");
    assert_eq!(run.state, radport_catalog::RunState::Succeeded);
}

/// How long until an RFC 3339 time has passed (plus a little).
fn retry_wait(t: &str) -> Duration {
    let t = chrono::DateTime::parse_from_rfc3339(t).expect("time");
    let left = t.with_timezone(&chrono::Utc) - chrono::Utc::now();
    left.to_std().unwrap_or_default() + Duration::from_millis(20)
}

/// A renewed lease keeps the job its worker's; a renewal by anyone else, or after the job was
/// taken over, says so.
async fn lease_renewal(url: &str) {
    use radport_catalog::JobState;
    let c = Catalog::connect(url).await.expect("connect");
    let id = c
        .enqueue_job(&job(JobKind::Thumbnail, "21.1", 3))
        .await
        .expect("enqueue")
        .expect("id");
    let short = Duration::from_millis(300);
    c.claim_job(&[JobKind::Thumbnail], "w1", short)
        .await
        .expect("claim")
        .expect("job");
    assert!(!c.renew_job_lease(&id, "w2", short).await.expect("renew"));
    // Renewed every 100 ms for 0.9 s: nobody takes it over.
    for _ in 0..9 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(c.renew_job_lease(&id, "w1", short).await.expect("renew"));
        assert!(c
            .claim_job(&[JobKind::Thumbnail], "w2", short)
            .await
            .expect("claim")
            .is_none());
    }
    // Not renewed: the lease runs out, another worker takes the job, and w1's renewal fails.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let taken = c
        .claim_job(&[JobKind::Thumbnail], "w2", short)
        .await
        .expect("claim")
        .expect("job taken over");
    assert_eq!((taken.id.as_str(), taken.attempts), (id.as_str(), 2));
    assert!(!c.renew_job_lease(&id, "w1", short).await.expect("renew"));
    assert!(c.renew_job_lease(&id, "w2", short).await.expect("renew"));
    c.complete_job(&id, "w2").await.expect("complete");
    assert!(!c.renew_job_lease(&id, "w2", short).await.expect("renew"));
    assert_eq!(
        c.get_job(&id).await.expect("get").expect("job").state,
        JobState::Succeeded
    );
}

/// What `/metrics` shows of the queue: waiting and running jobs per kind, every kind present,
/// and the age of the oldest waiting one.
async fn queue_figures(url: &str) {
    let c = Catalog::connect(url).await.expect("connect");
    let empty = c.job_queue().await.expect("figures");
    assert_eq!(empty.len(), JobKind::ALL.len());
    assert!(empty
        .iter()
        .all(|f| f.queued == 0 && f.running == 0 && f.oldest_queued == Duration::ZERO));
    for series in ["8.1", "8.2", "8.3"] {
        c.enqueue_job(&job(JobKind::Thumbnail, series, 2))
            .await
            .expect("enqueue");
    }
    c.enqueue_job(&job(JobKind::Validate, "8.1", 2))
        .await
        .expect("enqueue");
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.claim_job(&[JobKind::Thumbnail], "w1", Duration::from_secs(60))
        .await
        .expect("claim")
        .expect("a job");
    let figures = c.job_queue().await.expect("figures");
    let of = |kind| figures.iter().find(|f| f.kind == kind).expect("every kind");
    let thumbnail = of(JobKind::Thumbnail);
    assert_eq!((thumbnail.queued, thumbnail.running), (2, 1));
    assert!(
        thumbnail.oldest_queued >= Duration::from_millis(300)
            && thumbnail.oldest_queued < Duration::from_secs(60),
        "{thumbnail:?}"
    );
    assert_eq!(
        (of(JobKind::Validate).queued, of(JobKind::Validate).running),
        (1, 0)
    );
    assert_eq!(of(JobKind::Workflow).queued, 0);
    assert_eq!(of(JobKind::Workflow).oldest_queued, Duration::ZERO);
}
