/** Where a room's message stream stands: its epoch and the last seq delivered. */
export interface ResumePoint {
  epoch: string;
  lastSeq: bigint;
}

/**
 * The resume cursor of one room (PROTOCOL.md v1.1, history and resume). It remembers the
 * room's epoch and the highest seq delivered, so that after a reconnect the client asks
 * for everything after it, and drops any message it has already delivered.
 */
export class RoomCursor {
  epoch = "";
  lastSeq = 0n;

  /**
   * A successful JoinResponse: `sinceSeq` is the seq the join asked to resume after in
   * `requestedEpoch` (0 for a fresh join). In the same epoch the cursor continues from
   * there; in another epoch seqs start over, so nothing is a duplicate yet.
   */
  onJoin(responseEpoch: string, requestedEpoch: string, sinceSeq: bigint): void {
    const resumed = requestedEpoch !== "" && sinceSeq > 0n && responseEpoch === requestedEpoch;
    if (!resumed) {
      this.lastSeq = 0n;
    } else if (this.epoch === responseEpoch) {
      // Already delivered up to lastSeq in this epoch: those are duplicates even if the
      // resume asked from further back.
      if (sinceSeq > this.lastSeq) this.lastSeq = sinceSeq;
    } else {
      this.lastSeq = sinceSeq;
    }
    this.epoch = responseEpoch;
  }

  /**
   * A MessageNotification's seq: true if it is new (the cursor moves to it), false if it
   * was already delivered. Seq 0 means "not numbered" (a server of the original
   * protocol): always new, the cursor stays.
   */
  accept(seq: bigint): boolean {
    if (seq === 0n) return true;
    if (seq <= this.lastSeq) return false;
    this.lastSeq = seq;
    return true;
  }

  /** The point to resume from, or undefined before any join. */
  point(): ResumePoint | undefined {
    return this.epoch === "" ? undefined : { epoch: this.epoch, lastSeq: this.lastSeq };
  }
}
