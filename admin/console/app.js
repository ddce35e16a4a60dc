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

import { openDelete } from "./delete.js";
import { openEdit } from "./edit.js";
import "./generate.js";
import { openHistory } from "./history.js";
import { initList } from "./list.js";
import { openRotate } from "./rotate.js";
import { start } from "./session.js";

initList({ edit: openEdit, history: openHistory, rotate: openRotate, delete: openDelete });
start();
