// What the console knows: who is signed in, the policy's modules, and the
// list's filters and page.

export const state = {
  me: null, // GET /v1/whoami
  modules: [], // GET /v1/modules items
  filters: { status: "active", account: "", name: "" },
  cursors: [null], // cursors[i] opens page i
  page: 0,
  next: null, // the next page's cursor, for the page shown
  keys: [], // the page shown
};

// latest hands out a number per request of one kind and tells whether an
// answer is to the newest: an answer to an older request, arriving late,
// is dropped rather than shown under what the newer one asked for.
export function latest() {
  let n = 0;
  return {
    next: () => ++n,
    is: (ticket) => ticket === n,
  };
}
