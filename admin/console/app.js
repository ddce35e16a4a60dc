// The keygate console: Settings → API Keys. Plain JavaScript modules, one
// a section, no build step, no third-party code:
//
//   api.js       the admin API          state.js    what the console knows
//   dom.js       building the page      format.js   dates, statuses, text fields
//   dialogs.js   dialogs, field errors, and formDialog, the one helper behind
//                Generate, Edit, Rotate and Delete
//   pickers.js   scopes and expiry, shared by Generate, Edit and Rotate
//   list.js      filters, pages and rows     session.js  sign-in and out
//   generate.js  edit.js  rotate.js  delete.js  history.js  secret.js
//   usage.js     limits in Generate and Edit, and a key's usage charts
//   webhooks.js  the Webhooks page

import { openDelete } from "./delete.js";
import { openEdit } from "./edit.js";
import "./generate.js";
import { openHistory } from "./history.js";
import { initList } from "./list.js";
import { openRotate } from "./rotate.js";
import { start } from "./session.js";
import { openUsage } from "./usage.js";
import { api } from "./api.js";

// usage opens a key's usage, read again for its quota's remaining.
const usage = async (k, opener) => openUsage(await api.getKey(k.id).catch(() => k), opener);

initList({ edit: openEdit, history: openHistory, usage, rotate: openRotate, delete: openDelete });
start();
