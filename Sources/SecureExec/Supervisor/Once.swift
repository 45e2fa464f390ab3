import Synchronization

/// A flag that exactly one caller can claim: for resuming a continuation
/// from whichever of several racing callbacks comes first.
final class Once: Sendable {
    private let claimed = Atomic<Bool>(false)
    func claim() -> Bool { !claimed.exchange(true, ordering: .acquiringAndReleasing) }
}
