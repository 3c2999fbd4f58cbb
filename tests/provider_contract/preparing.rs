//! What a provider says of itself, and `prepare`.

use super::*;

/// "What the provider can do: fixed once it is open, and cheap to ask", and
/// `info` tells the same with its availability and isolation.
async fn describes_itself_the_same_way_every_time(subject: Subject) {
    let provider = &subject.provider;
    assert!(!provider.name().is_empty());
    let capabilities = provider.capabilities();
    assert_eq!(provider.capabilities(), capabilities, "fixed");
    let info = provider.info().await;
    assert_eq!(info.name, provider.name());
    assert_eq!(info.capabilities, capabilities);
    assert!(info.available, "{}", info.detail);
    assert!(!info.isolation.is_empty());
    assert!(
        capabilities.exec && capabilities.files,
        "an agent serves both"
    );
}

/// "Checks and completes a sandbox's spec before its record is written ...
/// A failure here leaves nothing behind."
async fn prepare_completes_a_spec_and_a_failure_leaves_nothing(subject: Subject) {
    let spec = subject.spec().await;
    if subject.provider.capabilities().images {
        assert!(spec.image.is_some(), "the default image is filled in");
    }
    let Some(mut refused) = subject.unpreparable.clone() else {
        return;
    };
    let before = subject.listed().await;
    let error = subject.provider.prepare(&mut refused).await.unwrap_err();
    assert!(
        matches!(
            error.kind(),
            ErrorKind::NotFound | ErrorKind::Unavailable | ErrorKind::InvalidArgument
        ),
        "{error:?}"
    );
    assert_eq!(subject.listed().await, before, "nothing left behind");
}

contract!(
    describes_itself_the_same_way_every_time,
    prepare_completes_a_spec_and_a_failure_leaves_nothing,
);
