//! An object's life: create, start, stop, delete, inspect, connect and
//! list, each safe to call again, and objects found by sandbox id alone.

use super::*;

/// "Makes the object for a sandbox, not yet running, and returns its
/// provider reference. If an object for this sandbox id exists already
/// (a retry, or a crash after making it), returns that one's reference."
async fn create_makes_an_object_not_yet_running_and_again_returns_it(subject: Subject) {
    let (id, reference) = subject.create().await;
    let seen = subject.inspect(&id).await.expect("a complete object");
    assert_eq!(seen.sandbox_id, id);
    assert_eq!(seen.provider_ref, reference);
    assert!(!seen.running, "not yet running");
    let spec = subject.spec().await;
    let again = subject
        .provider
        .create(ProvisionRequest {
            sandbox_id: &id,
            tenant: TENANT,
            spec: &spec,
        })
        .await
        .unwrap();
    assert_eq!(again, reference, "a retry returns the same object");
    assert_eq!(subject.listed().await, vec![id]);
}

/// "A half-made object from an earlier attempt is cleared and made anew";
/// `inspect` sees no complete object in it, `list` clears it, and deleting
/// one succeeds.
async fn half_made_objects_are_not_objects_and_are_cleared(subject: Subject) {
    let Some(half_make) = &subject.half_make else {
        return;
    };
    let retried = paddock::ids::new_sandbox_id();
    half_make(&retried);
    assert_eq!(subject.inspect(&retried).await, None);
    let spec = subject.spec().await;
    subject
        .provider
        .create(ProvisionRequest {
            sandbox_id: &retried,
            tenant: TENANT,
            spec: &spec,
        })
        .await
        .unwrap();
    assert!(subject.inspect(&retried).await.is_some(), "made anew");

    let abandoned = paddock::ids::new_sandbox_id();
    half_make(&abandoned);
    assert_eq!(subject.listed().await, vec![retried.clone()]);
    let cut_short = paddock::ids::new_sandbox_id();
    half_make(&cut_short);
    subject.provider.delete(&cut_short).await.unwrap();
    assert_eq!(subject.inspect(&cut_short).await, None);
    // What list cleared is gone: a create of that id makes a whole object.
    subject
        .provider
        .create(ProvisionRequest {
            sandbox_id: &abandoned,
            tenant: TENANT,
            spec: &spec,
        })
        .await
        .unwrap();
    let channel = subject.provider.start(&abandoned).await.unwrap();
    AgentClient::new(channel).answers(&abandoned).await.unwrap();
}

/// "Starts the sandbox's object and returns once its agent answers, with the
/// channel it answered through ... Starting a running one starts nothing
/// and returns a channel to its agent."
async fn start_returns_an_answering_agent_and_again_starts_nothing(subject: Subject) {
    let (id, agent) = subject.running().await;
    agent.answers(&id).await.expect("it answers once started");
    assert!(subject.inspect(&id).await.unwrap().running);
    let command = long_command(&agent, &id).await;
    let again = AgentClient::new(subject.provider.start(&id).await.unwrap());
    assert_eq!(
        command_state(&again, &id, &command).await,
        pb::CommandState::Running,
        "the same agent, its command still running"
    );
}

/// "Stops the sandbox's object, keeping its filesystem. Stopping a stopped
/// one does nothing."
async fn stop_keeps_the_filesystem_and_again_does_nothing(subject: Subject) {
    let (id, agent) = subject.running().await;
    agent
        .write_file(pb::WriteFileRequest {
            sandbox_id: id.clone(),
            path: "kept.txt".into(),
            content: b"still here".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    subject.provider.stop(&id).await.unwrap();
    assert!(!subject.inspect(&id).await.unwrap().running);
    subject.provider.stop(&id).await.unwrap();
    assert!(!subject.inspect(&id).await.unwrap().running);
    let agent = AgentClient::new(subject.provider.start(&id).await.unwrap());
    let read = agent
        .read_file(pb::ReadFileRequest {
            sandbox_id: id.clone(),
            path: "kept.txt".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(read.content, b"still here");
}

/// Start and stop: "`NOT_FOUND` when the object is gone."
async fn start_and_stop_of_a_missing_object_are_not_found(subject: Subject) {
    let never = paddock::ids::new_sandbox_id();
    let (gone, _) = subject.create().await;
    subject.provider.delete(&gone).await.unwrap();
    for id in [never, gone] {
        let error = subject.provider.start(&id).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::NotFound, "start: {error:?}");
        let error = subject.provider.stop(&id).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::NotFound, "stop: {error:?}");
    }
}

/// "Removes the sandbox's object and everything in it. Removing a missing
/// ... one succeeds."
async fn delete_removes_everything_and_again_succeeds(subject: Subject) {
    let (running, _) = subject.running().await;
    let (stopped, _) = subject.create().await;
    for id in [&running, &stopped] {
        subject.provider.delete(id).await.unwrap();
        assert_eq!(subject.inspect(id).await, None);
        subject.provider.delete(id).await.unwrap();
    }
    subject
        .provider
        .delete(&paddock::ids::new_sandbox_id())
        .await
        .unwrap();
    assert!(subject.listed().await.is_empty());
}

/// "A new channel to the running sandbox's agent ... The channel connects
/// lazily; calls on it fail with UNAVAILABLE while the agent cannot be
/// reached."
async fn connect_reaches_the_agent_and_fails_unavailable_while_it_cannot(subject: Subject) {
    let (id, _) = subject.running().await;
    let channel = subject.provider.connect(&id).await.unwrap();
    AgentClient::new(channel).answers(&id).await.unwrap();
    subject.provider.stop(&id).await.unwrap();
    let channel = subject
        .provider
        .connect(&id)
        .await
        .expect("connects lazily");
    assert!(unreachable(channel, &id).await);
}

/// "Every complete object this provider made": running and stopped ones,
/// not deleted ones.
async fn list_returns_every_complete_object(subject: Subject) {
    let (running, _) = subject.running().await;
    let (stopped, _) = subject.create().await;
    let (deleted, _) = subject.create().await;
    subject.provider.delete(&deleted).await.unwrap();
    let mut expected = vec![running.clone(), stopped.clone()];
    expected.sort();
    assert_eq!(subject.listed().await, expected);
    let observed = subject.provider.list().await.unwrap();
    let running_of = |id: &str| {
        observed
            .iter()
            .find(|o| o.sandbox_id == id)
            .unwrap()
            .running
    };
    assert!(running_of(&running));
    assert!(!running_of(&stopped));
}

/// "Objects are found by sandbox id, never by a handle held in memory": a
/// second instance over the same objects (a restarted server) sees them and
/// drives them.
async fn objects_are_found_by_sandbox_id_alone(subject: Subject) {
    let (id, agent) = subject.running().await;
    let command = long_command(&agent, &id).await;
    let reopened = (subject.reopen)().await;
    let seen = reopened.inspect(&id).await.unwrap().expect("found again");
    assert!(seen.running);
    assert!(
        reopened
            .list()
            .await
            .unwrap()
            .iter()
            .any(|o| o.sandbox_id == id)
    );
    let agent = AgentClient::new(reopened.connect(&id).await.unwrap());
    assert_eq!(
        command_state(&agent, &id, &command).await,
        pb::CommandState::Running
    );
    reopened.stop(&id).await.unwrap();
    reopened.delete(&id).await.unwrap();
    assert_eq!(subject.inspect(&id).await, None);
}

contract!(
    create_makes_an_object_not_yet_running_and_again_returns_it,
    half_made_objects_are_not_objects_and_are_cleared,
    start_returns_an_answering_agent_and_again_starts_nothing,
    stop_keeps_the_filesystem_and_again_does_nothing,
    start_and_stop_of_a_missing_object_are_not_found,
    delete_removes_everything_and_again_succeeds,
    connect_reaches_the_agent_and_fails_unavailable_while_it_cannot,
    list_returns_every_complete_object,
    objects_are_found_by_sandbox_id_alone,
);
