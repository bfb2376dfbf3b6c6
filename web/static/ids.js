// Message ids are "<milliseconds>-<sequence>" (docs/protocol.md §5). They
// compare numerically, part by part; both parts are compared as decimal
// strings, so a sequence never overflows a Number.

const ID = /^(\d+)-(\d+)$/;

/** isId reports whether s has the form of a message id. */
export function isId(s) {
  return typeof s === "string" && ID.test(s);
}

function compareDigits(a, b) {
  a = a.replace(/^0+(?=\d)/, "");
  b = b.replace(/^0+(?=\d)/, "");
  if (a.length !== b.length) return a.length < b.length ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** compareIds returns -1, 0 or 1 as id a is before, equal to or after b. */
export function compareIds(a, b) {
  const ma = ID.exec(a);
  const mb = ID.exec(b);
  if (!ma || !mb) throw new TypeError(`not a message id: ${ma ? b : a}`);
  return compareDigits(ma[1], mb[1]) || compareDigits(ma[2], mb[2]);
}

/** maxId returns the later of two ids; either may be null. */
export function maxId(a, b) {
  if (!a) return b;
  if (!b) return a;
  return compareIds(a, b) >= 0 ? a : b;
}

/**
 * insertionIndex returns where a message with id belongs in list (sorted
 * by id, oldest first) and whether one with that id is already there.
 */
export function insertionIndex(list, id) {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const c = compareIds(list[mid].id, id);
    if (c === 0) return { index: mid, found: true };
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return { index: lo, found: false };
}
