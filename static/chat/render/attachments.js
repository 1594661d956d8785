// A user message's files in the transcript: a thumbnail (the served image, opening it whole)
// for an image, a chip with the name and size (a download) for any other file.

import { formatSize, isImageType } from "../attachments.js";
import { formatNumber } from "../strings.js";

export function renderAttachments(message, view) {
  const list = Array.isArray(message.attachments) ? message.attachments : [];
  const key = list.map((a) => a.id).join(",");
  if (view.rendered.attachments === key) return;
  view.rendered.attachments = key;
  if (!list.length) {
    view.files?.remove();
    view.files = null;
    return;
  }
  if (!view.files) {
    view.files = document.createElement("ul");
    view.files.className = "message-attachments";
    view.content.before(view.files);
  }
  view.files.replaceChildren(
    ...list.map((attachment) => {
      const item = document.createElement("li");
      item.className = "message-attachment";
      item.dataset.attachmentId = attachment.id;
      const link = document.createElement("a");
      link.href = attachment.url;
      link.rel = "noopener";
      if (isImageType(attachment.content_type)) {
        link.target = "_blank";
        link.className = "message-attachment-image";
        const img = document.createElement("img");
        img.className = "attachment-thumb";
        img.src = attachment.url;
        img.alt = attachment.name;
        img.loading = "lazy";
        link.append(img);
      } else {
        link.className = "message-attachment-file";
        link.download = attachment.name;
        const name = document.createElement("span");
        name.className = "attachment-file-name";
        name.textContent = attachment.name;
        const size = document.createElement("span");
        size.className = "attachment-file-size";
        size.textContent = formatSize(attachment.size, formatNumber);
        link.append(name, size);
      }
      item.append(link);
      return item;
    }),
  );
}
