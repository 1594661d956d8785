// The page's shared objects, filled once by main.js (the only module that reads the document at
// load) before anything renders or connects; the other modules read them when called.
export const page = {
  // state.js createState(): the data model.
  state: null,
  // The signed-in user ({id, name}), from the page.
  me: null,
  // main.js's element hooks (`els.transcript`, `els.input`...).
  els: null,
  // socket.js Connection.
  conn: null,
  // The home page's draft (views.home), until its first send creates the conversation
  // (draft.js); null on a conversation's page.
  draft: null,
  // URLs the template fills in: newConversation, feedback (with a placeholder id), contextApi, home.
  urls: { newConversation: "", feedback: "", contextApi: "", home: "/" },
};

// How long a "Saved" note stays (feedback, customer context).
export const SAVED_VISIBLE_MS = 4_000;
