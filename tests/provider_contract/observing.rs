//! `observe`: what happens to objects without the provider being asked.

use paddock::provider::Observation;
use tokio::sync::broadcast;

use super::*;

/// The next observation about `id`, within 30 s.
async fn next_about(observations: &mut broadcast::Receiver<Observation>, id: &str) -> Observation {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let observation = observations.recv().await.expect("observations go on");
            let about = match &observation {
                Observation::Stopped { sandbox_id, .. }
                | Observation::Removed { sandbox_id, .. } => sandbox_id == id,
                Observation::Resync => false,
            };
            if about {
                return observation;
            }
        }
    })
    .await
    .expect("an observation within 30 s")
}

/// "Observations of objects changing without Paddock asking ... for
/// providers that can see them; `None` for those that cannot": an object
/// stopped behind the provider's back is reported stopped, with its tenant
/// and a reason, and one removed is reported removed.
async fn observe_reports_objects_changed_behind_its_back(subject: Subject) {
    let Some(behind) = &subject.behind_its_back else {
        assert!(subject.provider.observe().is_none());
        return;
    };
    let mut observations = subject.provider.observe().expect("it observes");
    let (id, _) = subject.running().await;
    (behind.stop)(&id);
    match next_about(&mut observations, &id).await {
        Observation::Stopped { tenant, reason, .. } => {
            assert_eq!(tenant, TENANT);
            assert!(!reason.is_empty());
        }
        other => panic!("expected Stopped, got {other:?}"),
    }
    (behind.remove)(&id);
    match next_about(&mut observations, &id).await {
        Observation::Removed { tenant, .. } => assert_eq!(tenant, TENANT),
        other => panic!("expected Removed, got {other:?}"),
    }
}

contract!(observe_reports_objects_changed_behind_its_back);
