/// The paged store's answer to "which of these would a request read?", for the executor's
/// prefill waves (it queues those reads ahead of the expert computing; docs/design.md §5).
extension PagedExpertStore {
    public func notResident(_ keys: [ExpertKey]) -> [ExpertKey] {
        let present = residentKeys
        return keys.filter { !present.contains($0) }
    }
}
