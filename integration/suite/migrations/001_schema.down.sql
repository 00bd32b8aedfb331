DROP TABLE children, parents, blobs, events, users;
